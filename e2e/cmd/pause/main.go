// Command pause is the sandbox ("pause") process of the test node's pods: it
// holds the pod's namespaces, does nothing, reaps orphans when it is the pod's
// PID 1 (shareProcessNamespace), and exits on SIGINT or SIGTERM. Built static
// (CGO_ENABLED=0) so its image needs no libraries; nothing can be pulled.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		// Reap every exited child; one SIGCHLD may stand for several.
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
