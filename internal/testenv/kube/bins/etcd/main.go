// Command etcd is etcd's own server main, built at the version pinned in this
// module's go.mod so tests need no downloaded binary.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
