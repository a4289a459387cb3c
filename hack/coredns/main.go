// Command coredns is CoreDNS with only the plugins a local node's pod DNS needs:
// kubernetes (Service and pod records) and forward, plus bind (listen on the
// node IP only, so stacks side by side do not collide) and errors.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/kubernetes"
)

func init() {
	// The order plugins run in; upstream's list names every plugin it ships.
	dnsserver.Directives = []string{"bind", "errors", "kubernetes", "forward"}
}

func main() {
	coremain.Run()
}
