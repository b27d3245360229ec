package epilog

import (
	"context"
	"fmt"
	"log/slog"
	"log/syslog"
	"strings"
)

// Tag names the epilog's messages in the system log.
const Tag = "baicommit-epilog"

// SyslogHandler sends slog records to the system log, one message each,
// at the syslog severity of the record's level.
type SyslogHandler struct {
	w     *syslog.Writer
	attrs string // pre-formatted attributes of With
}

// DialSyslog connects to the system log: the local one when addr is "",
// else the unix datagram socket at addr.
func DialSyslog(addr string) (*SyslogHandler, error) {
	var w *syslog.Writer
	var err error
	if addr == "" {
		w, err = syslog.New(syslog.LOG_INFO|syslog.LOG_DAEMON, Tag)
	} else {
		w, err = syslog.Dial("unixgram", addr, syslog.LOG_INFO|syslog.LOG_DAEMON, Tag)
	}
	if err != nil {
		return nil, err
	}
	return &SyslogHandler{w: w}, nil
}

// Close closes the connection to the system log.
func (h *SyslogHandler) Close() error { return h.w.Close() }

// Enabled implements slog.Handler: info and above.
func (h *SyslogHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

// Handle implements slog.Handler.
func (h *SyslogHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, "", a)
		return true
	})
	msg := b.String()
	switch {
	case r.Level >= slog.LevelError:
		return h.w.Err(msg)
	case r.Level >= slog.LevelWarn:
		return h.w.Warning(msg)
	}
	return h.w.Info(msg)
}

// WithAttrs implements slog.Handler.
func (h *SyslogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range attrs {
		writeAttr(&b, "", a)
	}
	return &SyslogHandler{w: h.w, attrs: b.String()}
}

// WithGroup implements slog.Handler; the epilog uses no groups, so the
// name is dropped.
func (h *SyslogHandler) WithGroup(string) slog.Handler { return h }

func writeAttr(b *strings.Builder, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		for _, g := range v.Group() {
			writeAttr(b, prefix+a.Key+".", g)
		}
		return
	}
	s := v.String()
	if s == "" || strings.ContainsAny(s, " \t\n\"=") {
		s = fmt.Sprintf("%q", s)
	}
	fmt.Fprintf(b, " %s%s=%s", prefix, a.Key, s)
}
