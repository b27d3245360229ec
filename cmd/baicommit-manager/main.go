// Command baicommit-manager is the cluster-wide front of baicommit: it
// authenticates users with MUNGE and relays their requests to the agent of
// the node that runs their session. See manager.toml.example.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/baicommit/baicommit/manager"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(log, os.Args[1:]); err != nil {
		log.Error("manager failed", "err", err)
		fmt.Fprintln(os.Stderr, "baicommit-manager:", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("baicommit-manager", flag.ContinueOnError)
	config := fs.String("config", "/etc/baicommit/manager.toml", "configuration file (TOML)")
	listen := fs.String("listen", "", "TCP address to listen on, overriding the configuration's listen")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := manager.LoadConfig(*config)
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	m, err := manager.New(cfg, nil, log)
	if err != nil {
		return err
	}
	srv := m.NewServer()
	if cfg.TLSCert != "" {
		// Read now, so a bad certificate stops the start instead of the first request.
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("tls_cert/tls_key: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	log.Info("manager started", "listen", ln.Addr().String(), "tls", cfg.TLSCert != "", "version", manager.Version)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("manager stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
