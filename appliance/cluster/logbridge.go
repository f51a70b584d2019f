package cluster

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
)

// logBridge receives memberlist's log lines (memberlist logs through a
// *log.Logger, one Write per line, "[LEVEL] memberlist: message"), forwards
// them to slog at the matching level and counts the lines that memberlist
// reports no other way:
//   - decrypt failures: "Decrypt packet failed" (UDP) and stream errors
//     "no installed keys could decrypt the message", "remote state is
//     encrypted and encryption is not configured", "encryption is configured
//     but remote state is not encrypted" (TCP). Lines about the remote side
//     ("remote error: ...") are not counted: they are the peer's failure.
//   - label mismatches: "unacceptable label".
//   - local suspicion: "Suspect <name> has failed, no acks received", the only
//     trace of this node's own probe marking a peer suspect (memberlist has no
//     event for the suspect state).
//
// The message texts are those of memberlist v0.7.0 (pinned in go.mod);
// TestLogBridge* and the encryption tests fail if they change.
type logBridge struct {
	log       *slog.Logger
	decrypt   atomic.Uint64
	label     atomic.Uint64
	onSuspect func(name string)
}

// Write receives one memberlist log line.
func (b *logBridge) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\r\n")
	level := slog.LevelInfo
	msg := line
	if strings.HasPrefix(line, "[") {
		if end := strings.IndexByte(line, ']'); end > 0 {
			switch line[1:end] {
			case "DEBUG", "TRACE":
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			}
			msg = strings.TrimSpace(line[end+1:])
		}
	}
	msg = strings.TrimPrefix(msg, "memberlist: ")
	if strings.HasPrefix(msg, "Received invalid msgType (71)") {
		// 71 is 'G': an HTTP GET on the gossip port, i.e. another node's seed
		// resolution trying this gossip address as an API address first.
		level = slog.LevelDebug
		msg += " (an HTTP request on the gossip port: a peer's seed lookup; harmless)"
	}
	if !strings.Contains(msg, "remote error") {
		if strings.Contains(msg, "Decrypt packet failed") ||
			strings.Contains(msg, "no installed keys could decrypt") ||
			strings.Contains(msg, "remote state is encrypted and encryption is not configured") ||
			strings.Contains(msg, "encryption is configured but remote state is not encrypted") {
			b.decrypt.Add(1)
		}
		if strings.Contains(msg, "unacceptable label") {
			b.label.Add(1)
		}
	}
	if rest, ok := strings.CutPrefix(msg, "Suspect "); ok {
		if name, ok := strings.CutSuffix(rest, " has failed, no acks received"); ok && b.onSuspect != nil {
			b.onSuspect(name)
		}
	}
	if b.log.Enabled(context.Background(), level) {
		b.log.Log(context.Background(), level, msg)
	}
	return len(p), nil
}
