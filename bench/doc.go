// Package bench holds atauth's comparative benchmarks: atauth beside a bare
// driver read, github.com/alexedwards/scs/v2, and indigo's
// atproto/auth/oauth ClientApp. It is a module of its own so that the peer
// libraries never enter atauth's go.mod. Run it as README.md says.
package bench
