// CoreDNS as the local cluster's DNS: upstream's own main (coremain.Run) with only the plugins a cluster's DNS
// uses linked in, instead of all of plugin.cfg (core/plugin imports every one, cloud providers included). This is
// the custom build CoreDNS documents; the plugins run in upstream's order (core/dnsserver's Directives).
package main

import (
	_ "github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	coremain.Run()
}
