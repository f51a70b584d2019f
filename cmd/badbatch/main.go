// Command badbatch runs the BadBatch edge event appliance.
//
//	badbatch [-p PORT] [-b SIZE] [-w STRATEGY] [-c] [-s SEEDS] [-n ID] [--config FILE] [--check-config]
//
// Exit status: 0 on a clean shutdown (or -h, -V, a valid --check-config),
// 1 on a runtime error (or an invalid --check-config), 2 on usage and
// configuration errors.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/badbatch/badbatch/appliance"
	"github.com/badbatch/badbatch/appliance/buildinfo"
	"github.com/badbatch/badbatch/config"
)

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

func run(args, environ []string, stdout, stderr io.Writer) int {
	loaded, err := config.Load(args, environ)
	checkOnly := slices.Contains(args, "--check-config") || (loaded != nil && loaded.CheckOnly)
	if err != nil {
		for _, e := range config.Errors(err) {
			fmt.Fprintln(stderr, "badbatch:", e)
		}
		if len(config.Errors(err)) == 0 {
			fmt.Fprintln(stderr, "badbatch:", err)
		}
		if errors.Is(err, config.ErrUsage) {
			fmt.Fprintln(stderr, "Run 'badbatch --help' for usage.")
			return 2
		}
		if checkOnly {
			return 1
		}
		return 2
	}
	switch {
	case loaded.ShowHelp:
		fmt.Fprint(stdout, loaded.Usage)
		return 0
	case loaded.ShowVersion:
		bi := buildinfo.Read()
		fmt.Fprintf(stdout, "badbatch %s (commit %s, %s)\n", bi.Version, bi.Commit, bi.GoVersion)
		return 0
	case loaded.CheckOnly:
		out, err := loaded.Config.Redacted().TOML()
		if err != nil {
			fmt.Fprintln(stderr, "badbatch:", err)
			return 1
		}
		src := "defaults"
		if loaded.File != "" {
			src = loaded.File
		}
		fmt.Fprintf(stdout, "# configuration OK (%s + environment + flags); effective values, secrets redacted:\n%s", src, out)
		return 0
	}

	cfg := loaded.Config
	level := new(slog.LevelVar)
	if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		fmt.Fprintln(stderr, "badbatch: log.level:", err)
		return 2
	}
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(stderr, hopts)
	if cfg.Log.Format == "json" {
		h = slog.NewJSONHandler(stderr, hopts)
	}
	logger := slog.New(h)
	if loaded.File != "" {
		logger.Info("configuration loaded", "file", loaded.File)
	}

	a, err := appliance.New(cfg, logger, appliance.WithLevelVar(level))
	if err != nil {
		logger.Error("cannot start", "err", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	hupDone := make(chan struct{})
	go func() {
		defer close(hupDone)
		for {
			select {
			case <-ctx.Done():
				// Restore default signal handling: a second SIGINT/SIGTERM
				// during the drain terminates at once.
				stop()
				logger.Info("draining; send SIGINT or SIGTERM again to exit immediately")
				return
			case <-hup:
				logger.Info("SIGHUP: reloading configuration", "file", loaded.File)
				_ = a.ReloadFrom(loaded.Reload)
			}
		}
	}()

	err = a.Run(ctx)
	stop()
	<-hupDone
	if err != nil {
		logger.Error("stopped with errors", "err", err)
		return 1
	}
	return 0
}
