package config

import "time"

// Upper bounds of the kernel's tables. The kernel takes a ring buffer of any power of
// two below 4 GiB and hash maps of up to 2^28 buckets, but every byte of them is locked
// kernel memory, allocated at load: each table is held to about 1 GiB at most.
// collector/bounds_test.go checks these against the generated entry sizes.
const (
	// MaxRingSize is the largest ring buffer: 1 GiB of locked memory.
	MaxRingSize = 1 << 30
	// MaxTrackSize is the most skbs the kernel remembers (an entry is its key, its
	// 12-byte value and the hash map's own 48 bytes or so: ~300 MiB).
	MaxTrackSize = 1 << 22
	// MaxStackSize is the most drop stacks kept (512 bytes each: 32 MiB).
	MaxStackSize = 1 << 16
)

// Upper bounds of user-space tables and queues: each entry costs up to a few hundred
// bytes (a packet span with its stages a few KiB), so these keep pktspan within a few
// GiB even with every table full.
const (
	MaxQueueSpans     = 1 << 22 // otlp.queue_size: encoded spans of ~300 bytes, ~1.2 GiB
	MaxBatchSpans     = 1 << 14 // otlp.batch_size: a request stays within a receiver's default 4 MiB
	MaxFlows          = 1 << 22
	MaxOpenPackets    = 1 << 22
	MaxStages         = 1 << 12
	MaxHeldPackets    = 1 << 22
	MaxNATAliases     = 1 << 22
	MaxExchanges      = 1 << 20
	MaxNetnsNames     = 1 << 20
	MaxWindowPackets  = 1 << 24 // trace.max_packets
	MaxDropContext    = 1 << 16 // export.drop_context
	MaxCorrelatePkts  = 1 << 16 // correlate.max_packets
	MaxSpansPerSecond = 1 << 30 // export.max_spans_per_second
)

// Bounds of intervals: below the lower ones a timer spins or floods the log, above the
// upper ones a setting is a mistake (a day-long idle timeout keeps every flow forever).
const (
	MinStatsInterval = time.Second
	MaxStatsInterval = 24 * time.Hour
	MinOTLPTimeout   = 100 * time.Millisecond
	MaxOTLPTimeout   = 5 * time.Minute
	MinBatchDelay    = 10 * time.Millisecond
	MaxBatchDelay    = time.Minute
	MinTraceTimer    = time.Millisecond // idle timeout, max duration, close grace, packet timeout
	MaxTraceTimer    = 24 * time.Hour
	MinNetnsResync   = time.Second
	MaxNetnsTimer    = 24 * time.Hour // resync, grace
	MinLinger        = time.Millisecond
	MaxLinger        = time.Hour
)

// Size caps of files read at start: a path naming a device or a huge file fails at
// validation instead of filling memory.
const (
	// MaxConfigBytes caps the YAML config file.
	MaxConfigBytes = 1 << 20
	// MaxBTFBytes caps a --btf file; a whole kernel's BTF is 5 to 10 MiB.
	MaxBTFBytes = 256 << 20
	// MaxPEMBytes caps a CA bundle, a client certificate or a key.
	MaxPEMBytes = 1 << 20
)
