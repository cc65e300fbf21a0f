package main

import "fmt"

// expressionMode is case 3's filter expression: "port 9", the filter mode (a) says with
// --filter-port 9. No tuple filter is set, so every IP skb runs the expression's
// program on its first bytes and is turned away there: the rejected path's cost.
var expressionMode = kernelMode{key: "e", title: "(e) filter expression matching nothing ('port 9' --output none)",
	args: []string{"--output", "none", "port 9"}}

// reportExpressionCost prints, for one workload, the expression's cost per call as a
// ratio to mode (a)'s flags in the same rounds: per hook, then over every hook.
func reportExpressionCost(r *report, res results) {
	r.add("  %s: filter expression (e) per call as a ratio to the --filter-* flags (a):", res.w.name)
	for _, h := range append(res.hooks(expressionMode.key), "") {
		name := h
		if h == "" {
			name = "all hooks"
		}
		ratio := res.relative(expressionMode.key, "a", h)
		line := fmt.Sprintf("    %-24s %s", name, ratio.format("%.2f×"))
		if ratio.med == 0 {
			line = fmt.Sprintf("    %-24s not called in both modes", name)
		}
		r.add("%s (%s vs %s ns/call)", line, res.perCall(expressionMode.key, h).format("%.0f"), res.perCall("a", h).format("%.0f"))
	}
}
