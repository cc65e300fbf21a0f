package main

import (
	"fmt"
	"slices"
)

// spread is the median, minimum and maximum of a figure over rounds.
type spread struct{ med, lo, hi float64 }

func spreadOf(xs []float64) spread {
	if len(xs) == 0 {
		return spread{}
	}
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return spread{med, s[0], s[n-1]}
}

// format prints the median with verb, and the spread where rounds differ in print: "0.97 (0.95–0.99)".
func (s spread) format(verb string) string {
	m, lo, hi := fmt.Sprintf(verb, s.med), fmt.Sprintf(verb, s.lo), fmt.Sprintf(verb, s.hi)
	if lo == hi {
		return m
	}
	return fmt.Sprintf("%s (%s–%s)", m, lo, hi)
}
