/* Runs same_skb (bpf/headers/identity.h) on the host over lines of numbers (C literals) from stdin:
 *   t_l3 t_l4 t_seq t_ack t_flags t_delivered t_queued_ifindex t_queued_netns t_received_ifindex
 *   t_received_netns e_l3 e_l4 e_seq e_ack e_flags mode e_probe e_ifindex e_netns
 * (mode 0 follow, 1 free, 2 deliver; e_probe an enum probe_id) and prints "same" or "new" for each. */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <linux/types.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#include "identity.h"

#define VALUES 19

int main(void)
{
	long long v[VALUES];
	for (;;) {
		for (int i = 0; i < VALUES; i++)
			if (scanf("%lli", &v[i]) != 1)
				return 0;
		struct track t = {
			.l3 = v[0], .l4 = v[1], .tcp_seq = v[2], .tcp_ack = v[3], .tcp_flags = v[4], .delivered = v[5],
			.queued = {.ifindex = v[6], .netns = v[7]}, .received = {.ifindex = v[8], .netns = v[9]},
		};
		struct event ev = {
			.l3 = v[10], .l4 = v[11], .tcp_seq = v[12], .tcp_ack = v[13], .tcp_flags = v[14],
			.probe = v[16], .ifindex = v[17], .netns = v[18],
		};
		puts(same_skb(&t, &ev, (enum follow_mode)v[15]) ? "same" : "new");
	}
}
