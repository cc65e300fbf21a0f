/* Runs trail_walk (bpf/headers/trail.h) on the host. stdin, per case: "trail N", then N
 * events oldest first as "skb probe l3 l4 seq ack flags ifindex netns" (the i-th gets
 * ts_ns i + 1; past TRAIL_SLOTS they wrap around as in the kernel), then the drop as
 * "drop skb l3 l4 seq ack flags". Prints per case "n delivered cut matched" and the ts_ns of
 * each event taken, newest first, on one line. Numbers are C literals. */
#include "host.h"

#include "trail.h"

static struct trail t;
static struct drop_record d;

int main(void)
{
	unsigned long long n;
	while (scanf(" trail %lli", &n) == 1) {
		t = (struct trail){.next = n};
		for (unsigned long long i = 0; i < n; i++) {
			long long v[9];
			for (int j = 0; j < 9; j++)
				if (scanf("%lli", &v[j]) != 1)
					return 1;
			struct event ev = {
				.ts_ns = i + 1, .skb = v[0], .probe = v[1], .l3 = v[2], .l4 = v[3], .tcp_seq = v[4],
				.tcp_ack = v[5], .tcp_flags = v[6], .ifindex = v[7], .netns = v[8],
			};
			__builtin_memcpy(&t.slots[i % TRAIL_SLOTS], &ev, sizeof(struct trail_record));
		}
		long long v[6];
		if (scanf(" drop %lli %lli %lli %lli %lli %lli", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
			return 1;
		d = (struct drop_record){};
		d.event = (struct event){.skb = v[0], .probe = PROBE_KFREE_SKB, .l3 = v[1], .l4 = v[2],
					 .tcp_seq = v[3], .tcp_ack = v[4], .tcp_flags = v[5]};
		struct trail_found f = trail_walk(&t, &d);
		printf("%u %d %d %d", f.n, f.delivered, f.cut, f.matched);
		for (__u32 i = 0; i < f.n && i < TRAIL_SLOTS; i++)
			printf(" %llu", (unsigned long long)((const struct event *)&d.trail[i])->ts_ns);
		printf("\n");
	}
	return 0;
}
