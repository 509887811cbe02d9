package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runRemovePods stops and removes every pod sandbox of a CRI runtime:
//
//	kube remove-pods unix:///path/to/containerd.sock
//
// The test node's teardown needs it: the kubelet leaves pods running when it
// exits, their shims outlive containerd, and only the runtime's own
// StopPodSandbox also runs the CNI teardown (veth, IP address, network
// namespace). Killing containers behind the runtime's back would leak those.
func runRemovePods(args []string) int {
	if len(args) != 2 {
		fmt.Fprintf(os.Stderr, "usage: %s unix:///path/to/cri.sock\n", args[0])
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(args[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "remove-pods: %v\n", err)
		return 1
	}
	defer conn.Close() //nolint:errcheck // nothing to do about it on exit
	runtime := runtimeapi.NewRuntimeServiceClient(conn)
	sandboxes, err := runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "remove-pods: listing pods: %v\n", err)
		return 1
	}
	failed := 0
	for _, sandbox := range sandboxes.GetItems() {
		name := sandbox.GetMetadata().GetNamespace() + "/" + sandbox.GetMetadata().GetName()
		// Stop kills the containers at once (no grace: the cluster is going away).
		if _, err := runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sandbox.GetId()}); err != nil {
			fmt.Fprintf(os.Stderr, "remove-pods: stopping %s: %v\n", name, err)
			failed++
			continue
		}
		if _, err := runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sandbox.GetId()}); err != nil {
			fmt.Fprintf(os.Stderr, "remove-pods: removing %s: %v\n", name, err)
			failed++
		}
	}
	if failed > 0 {
		return 1
	}
	return 0
}
