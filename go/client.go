// SPDX-License-Identifier: Apache-2.0

// Package coffer is the Go client of cofferd, coffer's encryption daemon. It speaks protocol v1
// (docs/protocol.md) over the daemon's Unix socket with the standard library only: streamed
// jobs (an io.Writer that encrypts a backup, an io.ReadCloser that restores one), descriptor
// jobs (the daemon reads and writes the files itself), HEALTH and STATS.
//
// The key never enters this process: cofferd fetches it (a Kubernetes Secret, an HSM) and
// returns ciphertext plus the EncryptionStatus to keep with the backup. A restore hands that
// status back, and reading returns only plaintext the daemon has authenticated.
package coffer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
)

// DefaultSocket is the socket Dial uses when given "" and $COFFER_SOCKET is not set.
const DefaultSocket = "/run/coffer/cofferd.sock"

// maxIdle is how many idle connections a Client keeps for the next jobs.
const maxIdle = 8

// maxAttempts bounds the connection attempts refused with BUSY or SHUTDOWN.
const maxAttempts = 10

// Client is a handle on one cofferd. It is safe for concurrent use by many goroutines: each job
// takes a connection of its own (one job per connection at a time, as the protocol says) and
// gives it back to a small pool of persistent connections when the job succeeded. A
// connection whose job failed or was cancelled is closed, never reused.
type Client struct {
	p    *pool
	opts Options
}

// Options change what a Client's jobs ask of the daemon. The zero value asks for the daemon's
// defaults: its configured format for encrypt; for decrypt, the format the status (or the
// coffer-v1 header) names.
type Options struct {
	// Format names the job's format: "coffer-v1", "velero-v1", "cobblestone",
	// "cobblestone-128" or "none". For decrypt it overrides the status's format.
	Format string
	// Context is the bare cobblestone formats' context (at most 32000 bytes); else nil.
	Context []byte
	// Fsync makes descriptor jobs fsync the output before the daemon reports success.
	Fsync bool
}

// WithOptions returns a Client that shares cl's connections and runs its jobs with o.
func (cl *Client) WithOptions(o Options) *Client {
	o.Context = append([]byte(nil), o.Context...)
	return &Client{p: cl.p, opts: o}
}

// pool holds a socket's idle connections.
type pool struct {
	path   string
	mu     sync.Mutex
	idle   []*conn
	closed bool
}

// Dial connects to the cofferd listening at socketPath ("" means $COFFER_SOCKET, else
// DefaultSocket) and checks that it speaks protocol v1. A daemon that answers BUSY or SHUTDOWN
// is tried again with backoff until ctx ends; PERMISSION (this uid is not admitted) and
// CONNECT (nothing listens) come back at once.
func Dial(ctx context.Context, socketPath string) (*Client, error) {
	if socketPath == "" {
		socketPath = os.Getenv("COFFER_SOCKET")
	}
	if socketPath == "" {
		socketPath = DefaultSocket
	}
	cl := &Client{p: &pool{path: socketPath}}
	c, _, err := cl.get(ctx)
	if err != nil {
		return nil, err
	}
	cl.put(c)
	return cl, nil
}

// Close closes the idle connections. Jobs still running finish; their connections are closed
// when they end. Further jobs fail.
func (cl *Client) Close() error {
	p := cl.p
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		c.kill()
	}
	return nil
}

// SocketPath is the socket this client connects to.
func (cl *Client) SocketPath() string { return cl.p.path }

// get returns an idle connection that is still open, or a new one. reused says which.
func (cl *Client) get(ctx context.Context) (c *conn, reused bool, err error) {
	for attempt := 0; ; attempt++ {
		if c, err = cl.idleConn(); c != nil || err != nil {
			return c, c != nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		c, err = dialConn(ctx, cl.p.path)
		if err == nil || !retryable(err) || attempt+1 >= maxAttempts {
			return c, false, err
		}
		// BUSY or SHUTDOWN before any byte of the job moved: wait, and look for an idle
		// connection again (ours may hold the daemon's last slots).
		if berr := backoff(ctx, attempt); berr != nil {
			return nil, false, berr
		}
	}
}

// idleConn pops an idle connection that is still open, or returns nil.
func (cl *Client) idleConn() (*conn, error) {
	p := cl.p
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errors.New("coffer: the client is closed")
		}
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return nil, nil
		}
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if c.alive() {
			return c, nil
		}
		c.kill()
	}
}

// put gives a connection whose job succeeded back to the pool.
func (cl *Client) put(c *conn) {
	if c.isBroken() {
		return
	}
	p := cl.p
	p.mu.Lock()
	if !p.closed && len(p.idle) < maxIdle {
		p.idle = append(p.idle, c)
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		c.kill()
	}
}

// startJob takes a connection and sends the frame on it with send. When a pooled connection
// turns out to be closed while the frame is sent (no byte of the job moved), a fresh
// connection is used instead.
func (cl *Client) startJob(ctx context.Context, send func(*conn) error) (*conn, error) {
	for attempt := 0; ; attempt++ {
		c, reused, err := cl.get(ctx)
		if err != nil {
			return nil, err
		}
		if err = send(c); err == nil {
			return c, nil
		}
		c.kill()
		if !reused || attempt > 0 {
			return nil, err
		}
	}
}

// ctxErr prefers the context's error to the I/O error that its cancellation caused.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("coffer: job aborted: %w", cerr)
	}
	return err
}

// query sends a HEALTH or STATS frame and decodes the JSON reply.
func (cl *Client) query(ctx context.Context, typ byte) (map[string]interface{}, error) {
	req := make([]byte, headerLen)
	putHeader(req, typ, 0)
	c, err := cl.startJob(ctx, func(c *conn) error { return c.write(req) })
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	stop := c.watch(ctx)
	rtyp, p, err := c.readFrame(nil)
	stop()
	if err == nil && rtyp == frameError {
		err = parseError(p)
	} else if err == nil && (rtyp != typ || len(p) > maxJSON) {
		err = newError(-44, nil, "cofferd answered %s with a %s frame of %d bytes", frameName(typ), frameName(rtyp), len(p))
	}
	var out map[string]interface{}
	if err == nil {
		if jerr := json.Unmarshal(p, &out); jerr != nil || out == nil {
			err = newError(-41, jerr, "cofferd's %s reply is not a JSON object", frameName(typ))
		}
	}
	if err != nil {
		c.kill()
		return nil, ctxErr(ctx, err)
	}
	cl.put(c)
	return out, nil
}

// Health returns the daemon's HEALTH reply, decoded: "status" ("ok" or "stopping"),
// "version", "format", "keyId", and with an HSM an "hsm" object. Later versions add fields.
func (cl *Client) Health(ctx context.Context) (map[string]interface{}, error) {
	return cl.query(ctx, frameHealth)
}

// Stats returns the daemon's STATS reply, decoded (counters such as "jobsOk", "bytesIn").
// Numbers are float64, as encoding/json decodes them.
func (cl *Client) Stats(ctx context.Context) (map[string]interface{}, error) {
	return cl.query(ctx, frameStats)
}
