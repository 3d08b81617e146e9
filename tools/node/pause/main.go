// The pause process of a pod sandbox: it holds the pod's namespaces and
// nothing else. It sleeps until SIGINT or SIGTERM, then exits 0; as PID 1 of
// a pod that shares its PID namespace it reaps the orphans handed to it.
// A static Go binary (CGO off), so the image is this file alone.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is stamped by tools/build.py (-X main.version=...).
var version = "unknown"

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-v" || os.Args[1] == "--version") {
		fmt.Println("pause", version)
		return
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	children := make(chan os.Signal, 16)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			os.Exit(0)
		case <-children:
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
