package deploy

import (
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TokenSecretName is the Secret of type kubernetes.io/service-account-token
// that holds a long-lived token of the remote-access ServiceAccount sa: the
// name Linkerd's chart gives it. `linkerd multicluster link-gen` finds it by
// its annotation kubernetes.io/service-account.name; the token controller
// of kube-controller-manager fills its token in.
func TokenSecretName(sa string) string { return sa + "-token" }

// RemoteAccess returns the namespace and the read-only remote-access
// ServiceAccount, its token Secret, ClusterRole and ClusterRoleBinding for
// serviceAccount (what `mcgate allow` prints, as `linkerd multicluster
// allow` does; the install has them for RemoteAccessName).
func RemoteAccess(serviceAccount string) ([]*unstructured.Unstructured, error) {
	ns, err := decodeFile(baseFS, "base/namespace.yaml")
	if err != nil {
		return nil, err
	}
	objs, err := decodeFile(baseFS, "base/remote-access.yaml")
	if err != nil {
		return nil, err
	}
	for _, u := range objs {
		u.SetName(serviceAccount)
		switch u.GetKind() {
		case "Secret":
			err = edit(u, func(s *corev1.Secret) error {
				s.Name = TokenSecretName(serviceAccount)
				s.Annotations[corev1.ServiceAccountNameKey] = serviceAccount
				return nil
			})
		case "ClusterRoleBinding":
			err = edit(u, func(b *rbacv1.ClusterRoleBinding) error {
				b.RoleRef.Name = serviceAccount
				for i := range b.Subjects {
					b.Subjects[i].Name = serviceAccount
				}
				return nil
			})
		}
		if err != nil {
			return nil, err
		}
	}
	return append(ns, objs...), nil
}
