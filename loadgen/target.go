package loadgen

import (
	"fmt"
	"net"
	"net/netip"
)

// CheckTarget returns an error unless addr is host:port with a loopback
// IP address or "localhost" as host, or allowRemote is set. The check
// itself resolves no names. The dialer resolves "localhost", normally from
// /etc/hosts.
func CheckTarget(addr string, allowRemote bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("loadgen: invalid target %q: %w", addr, err)
	}
	if port == "" {
		return fmt.Errorf("loadgen: invalid target %q: missing port", addr)
	}
	if allowRemote {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("loadgen: target %q is not a loopback address; use 127.0.0.1 or ::1, or pass --allow-remote to load a server you operate", addr)
	}
	return nil
}
