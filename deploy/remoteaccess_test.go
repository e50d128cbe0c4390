package deploy

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestRemoteAccessTokenSecret: allow's token Secret is what `linkerd
// multicluster link-gen` looks for, a service-account-token Secret whose
// annotation names the ServiceAccount.
func TestRemoteAccessTokenSecret(t *testing.T) {
	objs, err := RemoteAccess("mirror-west")
	if err != nil {
		t.Fatal(err)
	}
	var secret *unstructured.Unstructured
	for _, u := range objs {
		if u.GetKind() == "Secret" {
			secret = u
		}
	}
	if secret == nil || secret.GetName() != TokenSecretName("mirror-west") || secret.GetNamespace() != Namespace {
		t.Fatalf("no Secret %s/%s among %d objects", Namespace, TokenSecretName("mirror-west"), len(objs))
	}
	if typ, _, _ := unstructured.NestedString(secret.Object, "type"); typ != string(corev1.SecretTypeServiceAccountToken) {
		t.Errorf("Secret type %q", typ)
	}
	if sa := secret.GetAnnotations()[corev1.ServiceAccountNameKey]; sa != "mirror-west" {
		t.Errorf("Secret annotation %s=%q", corev1.ServiceAccountNameKey, sa)
	}
}

// TestRemoteAccessDefaultIsTheInstalls: allow for the default name renders
// exactly the install's remote-access objects, so the base manifest's names
// (ServiceAccount, token Secret and its annotation, roles) agree.
func TestRemoteAccessDefaultIsTheInstalls(t *testing.T) {
	allow, err := RemoteAccess(RemoteAccessName)
	if err != nil {
		t.Fatal(err)
	}
	install, err := Render(Options{})
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]*unstructured.Unstructured{}
	for _, u := range install {
		byKey[Key(u)] = u
	}
	for _, u := range allow {
		in, ok := byKey[Key(u)]
		if !ok {
			t.Errorf("%s: not in the install", Key(u))
			continue
		}
		if !reflect.DeepEqual(u.Object, in.Object) {
			t.Errorf("%s differs from the install's:\nallow   %v\ninstall %v", Key(u), u.Object, in.Object)
		}
	}
	if _, ok := byKey["Secret/"+Namespace+"/"+TokenSecretName(RemoteAccessName)]; !ok {
		t.Errorf("the install has no Secret %s", TokenSecretName(RemoteAccessName))
	}
}
