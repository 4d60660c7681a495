// Command demo is a small web app that signs people in with atauth.
//
// With no flags it runs offline: it starts an in-process ATProto network
// (atauthtest) with two accounts and serves the app on
// http://127.0.0.1:8080. With -plc it signs in against that network instead,
// for example Bluesky's reference PDS running locally:
//
//	go run ./examples/demo -plc http://localhost:2582 -handle-resolver http://localhost:2583 -insecure-http
//
// The demo keeps its state in a data directory (-data, by default
// atauth-demo in the user's configuration directory): the sealing key, the
// SQLite session store, and the built-in network's keys, accounts and
// grants. A restart on the same address therefore keeps everyone signed in.
// -store picks another session store:
//
//	-store memory                        sessions end with the process
//	-store sqlite:/path/to/atauth.db     an SQLite file
//	-store postgres://user@host/db       PostgreSQL (the tables are created)
//	-store redis://host:6379/0           Redis
//
// GET /api/pds-session calls com.atproto.server.getSession at the signed-in
// user's PDS through atauth and answers what the PDS answered.
package main

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/atauth/atauth"
	"github.com/atauth/atauth/atauthtest"
	"github.com/atauth/atauth/storeadapters/memstore"
	"github.com/atauth/atauth/storeadapters/pgstore"
	"github.com/atauth/atauth/storeadapters/redisstore"
	"github.com/atauth/atauth/storeadapters/sqlitestore"
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
	data           string
	pdsOptions     string
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "127.0.0.1:8080", "address to listen on (use 127.0.0.1:0 for any free port)")
	flag.StringVar(&o.plc, "plc", "", "PLC directory URL; when set, sign in against that network instead of the built-in one")
	flag.StringVar(&o.handleResolver, "handle-resolver", "", "XRPC service URL for com.atproto.identity.resolveHandle")
	flag.BoolVar(&o.insecureHTTP, "insecure-http", false, "allow http, ports and loopback addresses (a local network)")
	flag.StringVar(&o.scope, "scope", "atproto transition:generic", "space-separated OAuth scopes")
	flag.StringVar(&o.store, "store", "", "session store: memory, sqlite:PATH, postgres://… or redis://… (default: an SQLite file in the data directory)")
	flag.StringVar(&o.data, "data", "", "directory for the demo's keys, sessions and built-in network (default: atauth-demo in the user's configuration directory)")
	flag.StringVar(&o.pdsOptions, "pds-options", "", "comma-separated PDS URLs offered for account creation (default: the built-in network's PDS)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, o options, stdout io.Writer) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	dataDir, err := openDataDir(o.data)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "data directory: %s\n", dataDir)
	spec, err := parseStoreSpec(o.store, dataDir)
	if err != nil {
		return err
	}
	store, closeStore, err := openStore(ctx, spec)
	if err != nil {
		return err
	}
	defer closeStore()
	fmt.Fprintf(stdout, "session store: %s\n", spec)
	secret, err := loadSealingKey(filepath.Join(dataDir, "sealing.key"))
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	defer ln.Close()
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
		SealingKeys:                []atauth.SealingKey{{ID: "demo", Secret: secret}},
		Logger:                     logger,
	}
	var accounts []atauthtest.Account
	if o.plc == "" {
		// The network keeps its state next to the sessions: a session names
		// the network's issuer and PDS, and refreshes with its grant.
		network, err := atauthtest.Start(
			atauthtest.WithStateFile(filepath.Join(dataDir, "network.json")),
			atauthtest.WithLogger(logger),
		)
		if err != nil {
			return fmt.Errorf("starting the built-in network: %w", err)
		}
		defer network.Close()
		for _, a := range []struct{ handle, password string }{{"alice.test", "alice-password"}, {"bob.test", "bob-password"}} {
			// After a restart the accounts exist already, with their DIDs.
			if _, err := network.CreateAccount(a.handle, a.password); err != nil && !errors.Is(err, atauthtest.ErrHandleTaken) {
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
				Description: "accounts are kept in the demo's data directory",
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
	m, err := atauth.New(cfg)
	if err != nil {
		return err
	}

	srv := &http.Server{Handler: newApp(m, logger, port, accounts), ReadHeaderTimeout: 10 * time.Second}
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

// openDataDir returns the data directory, dir or the default, and creates
// it, readable by its owner only, if it does not exist.
func openDataDir(dir string) (string, error) {
	if dir == "" {
		base, err := os.UserConfigDir()
		if err != nil {
			if base, err = os.UserCacheDir(); err != nil {
				return "", fmt.Errorf("no default data directory (%w); choose one with -data", err)
			}
		}
		dir = filepath.Join(base, "atauth-demo")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("data directory: %w", err)
	}
	return dir, nil
}

// sealingKeySize is the length of the key file: an AES-256 key.
const sealingKeySize = 32

// loadSealingKey reads the key that seals sessions from path, or creates
// it. The key must outlive the process: sessions sealed with a lost key
// cannot be opened.
func loadSealingKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil {
		if len(key) != sealingKeySize {
			return nil, fmt.Errorf("sealing key %s: got %d bytes, want %d (delete the file to start afresh; every session ends)", path, len(key), sealingKeySize)
		}
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("sealing key: %w", err)
	}
	key = make([]byte, sealingKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	// Written to a temporary file and renamed, so that a crash never leaves
	// a short key behind.
	f, err := os.CreateTemp(filepath.Dir(path), ".sealing.key.*") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("sealing key: %w", err)
	}
	_, err = f.Write(key)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return nil, fmt.Errorf("sealing key: %w", err)
	}
	return key, nil
}

// storeSpec is a parsed -store flag.
type storeSpec struct {
	kind   string // "memory", "sqlite", "postgres" or "redis"
	target string // the SQLite file or the server's URL
}

// String describes the store for people, without the URL's password.
func (s storeSpec) String() string {
	switch s.kind {
	case "memory":
		return "memory (sessions end with the process)"
	case "sqlite":
		return "SQLite " + s.target
	}
	if u, err := url.Parse(s.target); err == nil {
		return s.kind + " " + u.Redacted()
	}
	return s.kind
}

// parseStoreSpec parses the -store flag. An empty spec is an SQLite file in
// dataDir. It checks the URLs but connects to nothing.
func parseStoreSpec(spec, dataDir string) (storeSpec, error) {
	const usage = "want memory, sqlite:PATH, postgres://… or redis://…"
	switch {
	case spec == "":
		return storeSpec{kind: "sqlite", target: filepath.Join(dataDir, "atauth.db")}, nil
	case spec == "memory":
		return storeSpec{kind: "memory"}, nil
	case strings.HasPrefix(spec, "sqlite:"):
		path := strings.TrimPrefix(spec, "sqlite:")
		if path == "" {
			return storeSpec{}, fmt.Errorf("-store %q: the SQLite file is missing, as in sqlite:/var/lib/demo/atauth.db", spec)
		}
		return storeSpec{kind: "sqlite", target: path}, nil
	case strings.HasPrefix(spec, "postgres://"), strings.HasPrefix(spec, "postgresql://"):
		if _, err := pgxpool.ParseConfig(spec); err != nil {
			return storeSpec{}, fmt.Errorf("-store: invalid PostgreSQL URL: %w", err)
		}
		return storeSpec{kind: "postgres", target: spec}, nil
	case strings.HasPrefix(spec, "redis://"), strings.HasPrefix(spec, "rediss://"):
		if _, err := redis.ParseURL(spec); err != nil {
			return storeSpec{}, fmt.Errorf("-store: invalid Redis URL: %w", err)
		}
		return storeSpec{kind: "redis", target: spec}, nil
	default:
		return storeSpec{}, fmt.Errorf("-store %q: %s", spec, usage)
	}
}

// openStore opens the store s names, creating PostgreSQL's tables, and
// returns a function that closes it. It fails early, at startup, when the
// server does not answer.
func openStore(ctx context.Context, s storeSpec) (atauth.Store, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	switch s.kind {
	case "memory":
		return memstore.New(), func() {}, nil
	case "sqlite":
		store, err := sqlitestore.Open(s.target)
		if err != nil {
			return nil, nil, fmt.Errorf("opening the SQLite store: %w", err)
		}
		return store, func() { _ = store.Close() }, nil
	case "postgres":
		pool, err := pgxpool.New(ctx, s.target)
		if err != nil {
			return nil, nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
		}
		store := pgstore.New(pool)
		if err := store.Migrate(ctx); err != nil {
			pool.Close()
			return nil, nil, fmt.Errorf("creating the PostgreSQL tables: %w", err)
		}
		return store, pool.Close, nil
	case "redis":
		opts, err := redis.ParseURL(s.target)
		if err != nil {
			return nil, nil, fmt.Errorf("-store: invalid Redis URL: %w", err)
		}
		client := redis.NewClient(opts)
		if err := client.Ping(ctx).Err(); err != nil {
			_ = client.Close()
			return nil, nil, fmt.Errorf("connecting to Redis: %w", err)
		}
		return redisstore.New(client), func() { _ = client.Close() }, nil
	default:
		return nil, nil, fmt.Errorf("unknown store kind %q", s.kind)
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

// newApp mounts atauth, the demo's API and the demo page. accounts are the
// built-in network's test accounts, which the page shows.
func newApp(m *atauth.Manager, logger *slog.Logger, port int, accounts []atauthtest.Account) http.Handler {
	mux := http.NewServeMux()
	m.Register(mux)
	mux.Handle("GET /api/pds-session", m.RequireAuth(pdsSession(m, logger)))
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

// pdsSession answers what the signed-in user's PDS answers to
// com.atproto.server.getSession, called through atauth with the session's
// DPoP-bound tokens: a real PDS call, refreshing if it must.
func pdsSession(m *atauth.Manager, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := atauth.SessionFromContext(r.Context())
		if !ok {
			writeDetail(w, http.StatusUnauthorized, "not authenticated - login required")
			return
		}
		var out json.RawMessage
		err := m.PDSClient(s).Query(r.Context(), "com.atproto.server.getSession", nil, &out)
		var xe *atauth.XRPCError
		switch {
		case err == nil:
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			_, _ = w.Write(out)
		case errors.Is(err, atauth.ErrSessionExpired):
			writeDetail(w, http.StatusUnauthorized, "session_expired")
		case errors.Is(err, atauth.ErrUpstream):
			logger.WarnContext(r.Context(), "demo: PDS unavailable", "did", s.DID, "err", err)
			writeDetail(w, http.StatusServiceUnavailable, "the PDS is unavailable, try again")
		case errors.As(err, &xe):
			logger.WarnContext(r.Context(), "demo: PDS refused getSession", "did", s.DID, "err", err)
			writeDetail(w, http.StatusBadGateway, fmt.Sprintf("the PDS refused the call: %d %s", xe.StatusCode, xe.Name))
		default:
			logger.ErrorContext(r.Context(), "demo: PDS call failed", "did", s.DID, "err", err)
			writeDetail(w, http.StatusBadGateway, "the PDS call failed")
		}
	})
}

func writeDetail(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"detail": detail})
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
