package netns

import "fmt"

// The ports of the --correlate http labs' demo servers (examples/demoapp) in the server
// namespace: one answers, one sits behind LossyRules, one behind BlackHoleRules.
const (
	DemoPort      = 8090
	BlackHolePort = 8091
	LossyPort     = 8092
)

// LossyRules, loaded in the client namespace, drop the third long segment of the
// replies from port, once in the table's life: the sender's retransmission gets
// through, so the loss is recovered.
func LossyRules(port int) string {
	return fmt.Sprintf("table inet pktspan_lossy {\n chain input {\n  type filter hook input priority 0; policy accept;\n"+
		"  tcp sport %d meta length > 1000 numgen inc mod 1000000 == 2 drop\n }\n}\n", port)
}

// BlackHoleRules, loaded in the server namespace, drop every segment carrying data to
// port: connections open, and no request ever arrives.
func BlackHoleRules(port int) string {
	return fmt.Sprintf("table inet pktspan_black_hole {\n chain input {\n  type filter hook input priority 0; policy accept;\n"+
		"  tcp dport %d meta length > 100 drop\n }\n}\n", port)
}
