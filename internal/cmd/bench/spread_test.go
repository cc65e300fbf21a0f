package main

import "testing"

func TestSpreadIsMedianMinMax(t *testing.T) {
	for _, c := range []struct {
		xs         []float64
		want       spread
		verb, text string
	}{
		{[]float64{0.97}, spread{0.97, 0.97, 0.97}, "%.3f", "0.970"},
		{[]float64{3, 1, 2}, spread{2, 1, 3}, "%.3f", "2.000 (1.000–3.000)"},
		{[]float64{4, 1, 2, 3}, spread{2.5, 1, 4}, "%.3f", "2.500 (1.000–4.000)"},
		{nil, spread{}, "%.3f", "0.000"},
		{[]float64{1.25, 1, 1.4}, spread{1.25, 1, 1.4}, "%.0f", "1"}, // the spread only where it shows
	} {
		s := spreadOf(c.xs)
		if s != c.want || s.format(c.verb) != c.text {
			t.Errorf("spreadOf(%v) = %v %q, want %v %q", c.xs, s, s.format(c.verb), c.want, c.text)
		}
	}
}
