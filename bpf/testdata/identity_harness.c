/* Runs same_skb (bpf/headers/identity.h) on the host over lines of numbers (C literals) from stdin:
 *   t_l3 t_l4 t_seq t_ack t_flags t_delivered e_l3 e_l4 e_seq e_ack e_flags mode
 * (mode 0 follow, 1 free, 2 deliver) and prints "same" or "new" for each. */
#include <stdbool.h>
#include <stdio.h>
#include <linux/types.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#include "identity.h"

int main(void)
{
	int v[12];
	while (scanf("%i %i %i %i %i %i %i %i %i %i %i %i", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
		     &v[7], &v[8], &v[9], &v[10], &v[11]) == 12) {
		struct track t = {
			.l3 = v[0], .l4 = v[1], .tcp_seq = v[2], .tcp_ack = v[3], .tcp_flags = v[4], .delivered = v[5],
		};
		struct event ev = {
			.l3 = v[6], .l4 = v[7], .tcp_seq = v[8], .tcp_ack = v[9], .tcp_flags = v[10],
		};
		puts(same_skb(&t, &ev, (enum follow_mode)v[11]) ? "same" : "new");
	}
	return 0;
}
