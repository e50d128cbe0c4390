// Package mirror is the service mirror built into the gateway: it watches
// Links, mirrors the Services other clusters export into this cluster, keeps
// their EndpointSlices, allocates egress ports, writes Link status, and serves
// the Kubernetes-backed route table for ingress.
//
// The Link resource, its labels, annotations and status keep the shape of
// Linkerd's multicluster extension so its users can switch without rewriting
// manifests (see shared/reference/linkerd-multicluster.md §1, §2).
//
// What mcgate adds or changes, all visible in the cluster:
//   - One writer per gateway Deployment, elected on the Lease
//     multicluster.LeaseName ("mcgate-service-mirror-write") in the Links'
//     namespace, held as "<pod or host name>_<random>" (unique per
//     process); every replica serves ingress routes, egress listeners and
//     probes from its caches.
//   - Mirrors are written with server-side apply (field manager
//     "mcgate-mirror") and carry mcgate.io/desired-hash, so unchanged
//     objects are never written again; hand edits of what a mirror owns
//     (its ports, type and selector, its slice's endpoints and ports) are
//     undone.
//   - EndpointSlices (not Endpoints), named like the mirror Service, owned
//     by it, labelled endpointslice.kubernetes.io/managed-by=mcgate.
//   - Egress mode (default): the slice points at this cluster's gateway on
//     an egress port per service port, recorded on the mirror Service as
//     mcgate.io/egress-ports ("80=4200,443=4201"). Direct mode (Link
//     annotation mcgate.io/endpoint-mode=direct) points at the remote
//     gateway as Linkerd does.
//   - Link status gains conditions Valid (a bad field, named, or a
//     targetClusterDomain that the linked cluster's gateway Service
//     contradicts in mcgate.io/cluster-domain: reason ClusterDomainMismatch,
//     no new mirrors until fixed), Credentials and GatewayAlive; events are
//     recorded on the Link.
//   - Deleting a Link deletes its mirrors; a Secret change takes effect
//     without a restart, and bad credentials keep the running watcher.
package mirror
