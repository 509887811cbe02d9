// Command kube is a multi-call binary bundling the Kubernetes components the
// end-to-end tests need, so one `go build` produces one artifact and the
// shared dependencies are linked once.
//
// The component is chosen by the basename of argv[0] (so symlinks named
// after a component work) or, failing that, by the first argument:
//
//	kube kube-apiserver --etcd-servers=...
//	ln -s kube kubectl && ./kubectl get pods
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	_ "time/tzdata" // CronJob time zone support, as upstream

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"

	// Side-effect imports the upstream main packages also make.
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
)

// components maps a component name to its entry point; args[0] is the
// component name, args[1:] its arguments. Adding a component is one line.
var components = map[string]func(args []string) int{
	"etcd":                    runEtcd,
	"kube-apiserver":          cobraMain(apiserver.NewAPIServerCommand),
	"kube-controller-manager": cobraMain(controllermanager.NewControllerManagerCommand),
	"kube-scheduler":          cobraMain(func() *cobra.Command { return scheduler.NewSchedulerCommand() }),
	"kube-proxy":              cobraMain(proxy.NewProxyCommand),
	"kubelet":                 cobraMain(func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) }),
	"kubectl":                 runKubectl,
	"remove-pods":             runRemovePods,
}

func main() {
	args := os.Args
	if _, ok := components[filepath.Base(args[0])]; !ok {
		args = args[1:]
	}
	if len(args) == 0 {
		usage()
	}
	run, ok := components[filepath.Base(args[0])]
	if !ok {
		usage()
	}
	os.Exit(run(args))
}

func usage() {
	names := make([]string, 0, len(components))
	for name := range components {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: %s COMPONENT [ARGS...]\ncomponents: %v\n", filepath.Base(os.Args[0]), names)
	os.Exit(2)
}

// cobraMain runs a Kubernetes component command the way its upstream main does.
func cobraMain(newCommand func() *cobra.Command) func([]string) int {
	return func(args []string) int {
		os.Args = args // as if run under its own name
		command := newCommand()
		command.SetArgs(args[1:])
		return cli.Run(command)
	}
}

func runKubectl(args []string) int {
	// NewDefaultKubectlCommand reads os.Args itself (plugin handling).
	os.Args = args
	logs.GlogSetter(kubectlcmd.GetLogVerbosity(args)) //nolint:errcheck // as upstream
	command := kubectlcmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		kubectlutil.CheckErr(err)
	}
	return 0
}

func runEtcd(args []string) int {
	// etcdmain.Main parses args[1:] and exits the process itself.
	etcdmain.Main(args)
	return 0
}
