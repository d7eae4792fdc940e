// Command local-path-provisioner is the test cluster's default StorageClass backend
// (what kind ships as rancher's local-path-provisioner): each PersistentVolumeClaim of
// class "standard" gets a directory under -root on the node, mode 0777 so non-root pods
// can write it, as a hostPath PersistentVolume pinned to the node. Released volumes are
// deleted with their directory. It runs as a systemd unit inside the node container,
// next to the kubelet, so it needs no image.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v11/controller"
)

const provisionerName = "consortium.dev/local-path"

type localPath struct {
	root     string
	nodeName string
}

func (p *localPath) Provision(_ context.Context, opts controller.ProvisionOptions) (*v1.PersistentVolume, controller.ProvisioningState, error) {
	if opts.PVC.Spec.VolumeMode != nil && *opts.PVC.Spec.VolumeMode == v1.PersistentVolumeBlock {
		return nil, controller.ProvisioningFinished, errors.New("block volumes are not supported")
	}
	dir := filepath.Join(p.root, fmt.Sprintf("%s_%s_%s", opts.PVName, opts.PVC.Namespace, opts.PVC.Name))
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, controller.ProvisioningInBackground, err
	}
	if err := os.Chmod(dir, 0o777); err != nil { // not limited by the umask
		return nil, controller.ProvisioningInBackground, err
	}
	reclaim := v1.PersistentVolumeReclaimDelete
	if opts.StorageClass.ReclaimPolicy != nil {
		reclaim = *opts.StorageClass.ReclaimPolicy
	}
	hostPathType := v1.HostPathDirectory
	return &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: opts.PVName},
		Spec: v1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: reclaim,
			AccessModes:                   opts.PVC.Spec.AccessModes,
			MountOptions:                  opts.StorageClass.MountOptions,
			Capacity: v1.ResourceList{
				v1.ResourceStorage: opts.PVC.Spec.Resources.Requests[v1.ResourceStorage],
			},
			PersistentVolumeSource: v1.PersistentVolumeSource{
				HostPath: &v1.HostPathVolumeSource{Path: dir, Type: &hostPathType},
			},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{
				NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchExpressions: []v1.NodeSelectorRequirement{{
					Key: "kubernetes.io/hostname", Operator: v1.NodeSelectorOpIn, Values: []string{p.nodeName},
				}}}},
			}},
		},
	}, controller.ProvisioningFinished, nil
}

func (p *localPath) Delete(_ context.Context, pv *v1.PersistentVolume) error {
	if pv.Spec.HostPath == nil {
		return nil
	}
	dir := filepath.Clean(pv.Spec.HostPath.Path)
	if !strings.HasPrefix(dir, p.root+string(filepath.Separator)) {
		return fmt.Errorf("refusing to delete %s: not under %s", dir, p.root)
	}
	return os.RemoveAll(dir)
}

func main() {
	kubeconfig := flag.String("kubeconfig", "/etc/kubernetes/super-admin.conf", "kubeconfig to reach the API server")
	root := flag.String("root", "/var/local-path", "directory holding the volumes")
	nodeName := flag.String("node-name", "", "the node the volumes are on (default: hostname)")
	klog.InitFlags(nil)
	flag.Parse()
	if *nodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			klog.Fatalf("hostname: %v", err)
		}
		*nodeName = h
	}
	if err := os.MkdirAll(*root, 0o755); err != nil {
		klog.Fatalf("create %s: %v", *root, err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.Fatalf("kubeconfig: %v", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		klog.Fatalf("client: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	p := &localPath{root: filepath.Clean(*root), nodeName: *nodeName}
	pc := controller.NewProvisionController(ctx, client, provisionerName, p, controller.LeaderElection(false))
	klog.Infof("provisioning %s volumes under %s on node %s", provisionerName, *root, *nodeName)
	pc.Run(ctx)
}
