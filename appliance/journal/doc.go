// Package journal is BadBatch's durable event log: the LMAX "journaller",
// the first consumer after publish, writing every event to disk with group
// commit before any business handler sees it.
//
// # Layout
//
// A journal is a directory of append-only segment files named by the
// sequence of their first record (00000000000000000042.seg), rolled when
// they reach Options.SegmentSize. Each segment starts with a 16-byte header
// (magic, base sequence) followed by records framed as
//
//	length:u32 crc32c:u32 | seq:i64 ts:i64 plen:u16 kword:u32 [pseq:i64] producer key data
//
// (little endian; the CRC32C/Castagnoli covers everything after it). The
// top bit of kword is the record's format version: clear for version 1
// (klen only, as first released), set for version 2, which carries the
// producer's own sequence (Record.ProducerSeq) after kword. Records without
// a producer sequence are still written as version 1, and both versions
// may be mixed in one segment, so journals written before version 2 keep
// working after an upgrade (a downgrade is not supported).
// Sequences are non-negative and strictly increasing. Each segment has a
// sparse index (one entry per Options.IndexInterval bytes, 4 KiB by
// default) kept in memory and, for sealed segments, persisted beside it
// (.idx) so Open does not rescan them; ReadRange seeks with it and costs
// O(range), not O(journal).
//
// # Writing
//
// The journal consumer calls Append for each event of a disruptor batch
// (copying into a reusable buffer: no allocation per record) and Commit at
// the batch end: one write(2) for the whole batch and, with FsyncBatch, one
// fsync. Commit then publishes the durable sequence: Durable returns it and
// WaitDurable wakes the API handlers waiting to acknowledge (no polling).
//
// If a write or fsync fails, Durable does not move, Err (and Stats) report
// the failure, and WaitDurable fails fast with ErrUnavailable so the API can
// answer 503/507 instead of acknowledging. Records stay buffered; the next
// Commit, or a background retry every Options.RetryInterval, truncates the
// segment to its last fsynced offset and rewrites everything after it (an
// fsync error may have dropped dirty pages, so they are written again, not
// just fsynced again). When that succeeds the error clears. The caller
// should keep retrying Commit (which backpressures the ring) rather than
// drop anything.
//
// # Guarantees
//
// A record is "durable" once Durable() >= its sequence. What survives:
//
//	fsync policy   process crash (kill -9)        power loss / kernel crash
//	batch          every durable record           every durable record
//	interval       every durable record, and      every durable record; records
//	               records written but not yet    committed in the last interval
//	               fsynced (page cache survives)  that were not yet fsynced may be lost
//	never          every durable (= written)      anything not flushed by the OS may be
//	               record                         lost; a sealed segment may even be
//	                                              damaged (Open then needs RepairCorrupt)
//
// Under batch and interval, Durable counts only fsynced records, so an
// ack=durable answer is never given for a record a power loss can take.
// Under never, Durable advances as soon as the write returns: it protects
// against process crashes only. In every policy, only records that were
// never reported durable can be torn: recovery on Open truncates a torn or
// CRC-corrupt tail of the final segment (logging what it dropped) and
// numbering continues after LastSequence. Corruption in an earlier
// (sealed, fsynced) segment is media damage, not a torn write: Open refuses
// it with ErrCorrupt unless Options.RepairCorrupt is set.
//
// Segment creation, retention deletes and checkpoints also fsync the
// directory (except under never), so files do not vanish on power loss.
//
// # Reading, replay and checkpoints
//
// ReadRange and Replay return only durable records. Each processing stage
// saves its progress with SaveCheckpoint (atomic: temp file, fsync,
// rename); at start the daemon replays Replay(Checkpoint(stage)+1, ...)
// into that stage, so delivery to stages is at-least-once.
//
// # Retention
//
// Whole sealed segments are deleted, oldest first, while the journal is
// over Options.RetentionBytes or their newest record is older than
// Options.RetentionAge (by record timestamp). The active segment is never
// deleted. Earliest reports the oldest retained sequence; a read below it
// returns an *EvictedError (HTTP 410 with the earliest available).
package journal
