// Command demo is a small web app that signs people in with atauth.
//
// With no flags it runs offline: it starts an in-process ATProto network
// (atauthtest) with two accounts and serves the app on
// http://127.0.0.1:8080. With -plc it signs in against that network instead,
// for example Bluesky's reference PDS running locally:
//
//	go run ./examples/demo -plc http://localhost:2582 -handle-resolver http://localhost:2583 -insecure-http
package main

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/atauthtest"
	"github.com/atauth/atauth/storeadapters/memstore"
)

//go:embed static
var static embed.FS

type options struct {
	addr           string
	plc            string
	handleResolver string
	insecureHTTP   bool
	scope          string
	store          string
	pdsOptions     string
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "127.0.0.1:8080", "address to listen on (use 127.0.0.1:0 for any free port)")
	flag.StringVar(&o.plc, "plc", "", "PLC directory URL; when set, sign in against that network instead of the built-in one")
	flag.StringVar(&o.handleResolver, "handle-resolver", "", "XRPC service URL for com.atproto.identity.resolveHandle")
	flag.BoolVar(&o.insecureHTTP, "insecure-http", false, "allow http, ports and loopback addresses (a local network)")
	flag.StringVar(&o.scope, "scope", "atproto transition:generic", "space-separated OAuth scopes")
	flag.StringVar(&o.store, "store", "memory", "session store: memory")
	flag.StringVar(&o.pdsOptions, "pds-options", "", "comma-separated PDS URLs offered for account creation (default: the built-in network's PDS)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, o options, stdout io.Writer) error {
	store, err := openStore(o.store)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	// The loopback client's redirect URI must be on 127.0.0.1, not localhost.
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)

	cfg := atauth.Config{
		RedirectURL: origin + "/auth/callback",
		// The universe adds transition:email to what sign-in asks for, so a
		// scope upgrade can be tried.
		Scopes:                     universe(strings.Fields(o.scope)),
		LoginScopes:                strings.Fields(o.scope),
		AccountCreation:            true,
		Store:                      store,
		PLCURL:                     o.plc,
		HandleResolverURL:          o.handleResolver,
		InsecureAllowLocalNetworks: o.insecureHTTP,
		ClientName:                 "atauth demo",
		Logger:                     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	var accounts []atauthtest.Account
	if o.plc == "" {
		network, err := atauthtest.Start()
		if err != nil {
			return fmt.Errorf("starting the built-in network: %w", err)
		}
		defer network.Close()
		for _, a := range []struct{ handle, password string }{{"alice.test", "alice-password"}, {"bob.test", "bob-password"}} {
			if _, err := network.CreateAccount(a.handle, a.password); err != nil {
				return err
			}
		}
		cfg.PLCURL = network.PLCURL()
		cfg.HandleResolverURL = network.HandleResolverURL()
		cfg.InsecureAllowLocalNetworks = true
		if o.pdsOptions == "" {
			cfg.PDSOptions = []atauth.PDSOption{{
				Name:        "Built-in test PDS",
				URL:         network.PDSURL(),
				Recommended: true,
				Description: "accounts live in memory until the demo stops",
			}}
		}
		accounts = network.Accounts()
		fmt.Fprintln(stdout, "built-in ATProto network (offline); test accounts:")
		for _, a := range accounts {
			fmt.Fprintf(stdout, "  handle %-12s password %s\n", a.Handle, a.Password)
		}
	}
	for _, u := range strings.Split(o.pdsOptions, ",") {
		if u = strings.TrimSpace(u); u != "" {
			cfg.PDSOptions = append(cfg.PDSOptions, atauth.PDSOption{Name: u, URL: u, Recommended: len(cfg.PDSOptions) == 0})
		}
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	cfg.SealingKeys = []atauth.SealingKey{{ID: "demo", Secret: secret}}

	m, err := atauth.New(cfg)
	if err != nil {
		return err
	}

	srv := &http.Server{Handler: newApp(m, port, accounts), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "atauth demo listening on %s\n", origin)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutdown)
	}
}

func openStore(spec string) (atauth.Store, error) {
	switch spec {
	case "memory", "":
		return memstore.New(), nil
	default:
		return nil, fmt.Errorf("-store %q: only \"memory\" is available", spec)
	}
}

// universe returns the login scopes plus transition:email.
func universe(login []string) []string {
	for _, s := range login {
		if s == "transition:email" {
			return login
		}
	}
	return append(append([]string{}, login...), "transition:email")
}

// newApp mounts atauth and the demo page. accounts are the built-in
// network's test accounts, which the page shows.
func newApp(m *atauth.Manager, port int, accounts []atauthtest.Account) http.Handler {
	mux := http.NewServeMux()
	m.Register(mux)
	mux.HandleFunc("GET /demo/accounts", func(w http.ResponseWriter, r *http.Request) {
		type account struct {
			Handle   string `json:"handle"`
			Password string `json:"password"`
		}
		list := []account{}
		for _, a := range accounts {
			list = append(list, account{a.Handle, a.Password})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(list)
	})
	page, err := fs.Sub(static, "static")
	if err != nil {
		panic(err)
	}
	mux.Handle("GET /", http.FileServerFS(page))
	return canonicalHost(mux, port)
}

// canonicalHost redirects requests for localhost to 127.0.0.1 before any
// cookie is set: the loopback redirect URI is on 127.0.0.1, and cookies set
// on one host are not sent to the other.
func canonicalHost(next http.Handler, port int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		if host == "localhost" {
			u := *r.URL
			u.Scheme = "http"
			u.Host = fmt.Sprintf("127.0.0.1:%d", port)
			http.Redirect(w, r, u.String(), http.StatusTemporaryRedirect)
			return
		}
		next.ServeHTTP(w, r)
	})
}
