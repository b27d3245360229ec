package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/baicommit/baicommit/api"
	"github.com/baicommit/baicommit/internal/archives"
)

// busyWatcher runs in every page the browser loads and counts, per
// session row, the times a spinning Commit button was in the page, so a
// test can tell that a freeze showed as running however briefly.
const busyWatcher = `window.__busySeen = {};
new MutationObserver(() => {
  for (const b of document.querySelectorAll('button.commit[aria-busy="true"]')) {
    const tr = b.closest("tr");
    if (tr && b.disabled) window.__busySeen[tr.dataset.session] = (window.__busySeen[tr.dataset.session] || 0) + 1;
  }
}).observe(document, {subtree: true, childList: true, attributes: true});`

// newBrowser starts a headless Chromium for one test, with a fresh
// profile, and returns its tab.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	exe, err := exec.LookPath("chromium")
	assert.NilError(t, err, "!!! no chromium: the web tests need a real browser (scripts/setup.sh installs Debian's chromium)")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // root in CI
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1440, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first call starts the browser, and must not have a deadline.
	watch := func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: busyWatcher})
		return chromedp.Void{}, err
	}
	assert.NilError(t, chromedp.Do(ctx, watch))
	return ctx
}

// do runs browser actions within d, failing the test with what the page
// showed when one fails.
func do(t *testing.T, ctx context.Context, d time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := chromedp.Do(tctx, actions...); err != nil {
		browserFailed(t, ctx, err)
	}
}

// get runs one browser action that returns a value.
func get[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		browserFailed(t, ctx, err)
	}
	return v
}

// text is the text of the element sel names, and attr the value of one of
// its attributes, each read in one turn of the page's own event loop.
// chromedp's Text finds the node first and reads it in a second call: the
// page redraws its rows on every refresh, and a row redrawn in between is
// read out of the document, as "". Both wait up to 10s for the element.
func text[S chromedp.CSS | chromedp.ID](t *testing.T, ctx context.Context, sel S) string {
	t.Helper()
	return domRead(t, ctx, fmt.Sprintf(`(e => e ? e.innerText : null)(%s)`, query(sel)))
}

func attr[S chromedp.CSS | chromedp.ID](t *testing.T, ctx context.Context, sel S, name string) string {
	t.Helper()
	n, _ := json.Marshal(name)
	return domRead(t, ctx, fmt.Sprintf(`(e => e && e.hasAttribute(%[1]s) ? e.getAttribute(%[1]s) : null)(%[2]s)`, n, query(sel)))
}

// query is the JavaScript expression for the element sel names.
func query[S chromedp.CSS | chromedp.ID](sel S) string {
	s, _ := json.Marshal(string(sel))
	if _, isID := any(sel).(chromedp.ID); isID {
		return "document.getElementById(" + string(s) + ")"
	}
	return "document.querySelector(" + string(s) + ")"
}

// domRead evaluates js, an expression that is null until what it reads is
// in the page, until it is not.
func domRead(t *testing.T, ctx context.Context, js string) string {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		v, err := chromedp.Run(tctx, chromedp.Evaluate[*string](js))
		if err == nil && v != nil {
			return *v
		}
		if tctx.Err() != nil {
			if err == nil {
				err = fmt.Errorf("%s: nothing in the page after 10s", js)
			}
			browserFailed(t, ctx, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func browserFailed(t *testing.T, ctx context.Context, err error) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, _ := chromedp.Run(tctx, chromedp.Text(chromedp.CSS("body")))
	screenshot(t, ctx, "failed-"+strings.ReplaceAll(t.Name(), "/", "-"))
	t.Fatalf("browser: %v\npage text:\n%s", err, body)
}

// artifactDir is where tests leave screenshots: BAICOMMIT_ARTIFACTS, or
// artifacts/ at the top of the repository.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("BAICOMMIT_ARTIFACTS")
	if dir == "" {
		dir, _ = filepath.Abs(filepath.Join("..", "..", "artifacts"))
	}
	assert.NilError(t, os.MkdirAll(dir, 0o755))
	return dir
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(artifactDir(t), name+".png")
	if err := os.WriteFile(p, png, 0o644); err == nil {
		t.Logf("screenshot: %s", p)
	}
}

// webLink asks for a login link as who, as a user on a login node would.
func webLink(t *testing.T, m *managerProc, who string) api.WebLink {
	t.Helper()
	r := m.cli(t, who, "web", "--json")
	assert.Equal(t, r.code, 0, "%s", r)
	var l api.WebLink
	assert.NilError(t, json.Unmarshal([]byte(r.stdout), &l), "%s", r)
	assert.Check(t, strings.HasPrefix(l.URL, m.url+"/web/login#MUNGE:"), l.URL)
	assert.Check(t, is.Equal(l.User, who))
	return l
}

// webKey writes a session key the manager's account alone may read, for
// replicas that must accept each other's sessions.
func webKey(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "baicommit-e2e-webkey-")
	assert.NilError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	assert.NilError(t, os.Chmod(dir, 0o755))
	b := make([]byte, 48)
	_, _ = rand.Read(b)
	p := filepath.Join(dir, "web.key")
	assert.NilError(t, os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(b)), 0o600))
	giveToManager(t, p)
	return p
}

// unnamedControls lists the controls in the page that assistive
// technology would announce without a name, from Chromium's own
// accessibility tree.
func unnamedControls(t *testing.T, ctx context.Context) []string {
	t.Helper()
	tree := get(t, ctx, func(ctx context.Context, tg *chromedp.Target) (accessibility.GetFullAXTreeResult, error) {
		return cdp.Call(ctx, tg, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
	})
	str := func(v *accessibility.Value) string {
		if v == nil {
			return ""
		}
		var s string
		_ = json.Unmarshal(v.Value, &s)
		return s
	}
	var bad []string
	controls := map[string]bool{"button": true, "link": true, "textbox": true, "checkbox": true, "combobox": true}
	for _, n := range tree.Nodes {
		if role := str(n.Role); !n.Ignored && controls[role] && strings.TrimSpace(str(n.Name)) == "" {
			bad = append(bad, role)
		}
	}
	assert.Check(t, len(tree.Nodes) > 10, "an accessibility tree of %d nodes", len(tree.Nodes))
	return bad
}

// row is the CSS selector of a session's row.
func row(name string) string { return fmt.Sprintf(`tr[data-session=%q]`, name) }

// sessionsRefreshed waits until the page has fetched its sessions once
// more (it does every 5s) and drawn them.
func sessionsRefreshed(t *testing.T, ctx context.Context) {
	t.Helper()
	fetched := `performance.getEntriesByType("resource").filter(e => e.name.endsWith("/api/sessions")).length`
	n := get(t, ctx, chromedp.Evaluate[int](fetched))
	do(t, ctx, 15*time.Second, chromedp.Poll[chromedp.Void](fmt.Sprintf("%s > %d", fetched, n), chromedp.WithPollingInterval(100*time.Millisecond)))
	time.Sleep(300 * time.Millisecond) // the answer is drawn once it is parsed
}

// css and id make selectors.
func css(format string, args ...any) chromedp.CSS { return chromedp.CSS(fmt.Sprintf(format, args...)) }

func id(s string) chromedp.ID { return chromedp.ID(s) }

// A user signs in with the link `baicommit web` printed, sees their
// sessions and nobody else's, presses Commit: the button spins and stays
// disabled while the freeze runs (also after a reload, and for a freeze
// started from the CLI), then the row shows the archive, which loads with
// podman load and holds the user's file; the frozen images view lists it
// with a restore command that works.
func TestWebCommitButton(t *testing.T) {
	n1 := slurmNode(t)
	c := newCluster(t, []string{n1}, 2, nil, "web_key_file = "+strconv.Quote(webKey(t)))
	m := c.managers[0]
	job := sbatch(t, alice)
	// Ballast, so the freeze runs long enough to reload the page meanwhile.
	ctr := session(t, alice, "echo frozen-from-the-web > /root/web.txt && busybox dd if=/dev/urandom of=/root/ballast bs=1M count=200 2>/dev/null",
		"--label", api.LabelJob+"="+job)
	other := session(t, alice, "echo second > /root/second.txt && busybox dd if=/dev/urandom of=/root/ballast bs=1M count=80 2>/dev/null")
	bobs := session(t, bob, "")

	link := webLink(t, m, alice)
	ctx := newBrowser(t)
	t0 := time.Now()
	do(t, ctx, 60*time.Second,
		chromedp.Navigate(link.URL),
		chromedp.WaitEnabled(id("signin")),
		chromedp.Click(id("signin")),
		chromedp.WaitVisible(css("%s button.commit", row(ctr))),
	)
	signedIn := time.Since(t0)
	assert.Check(t, is.Equal(text(t, ctx, id("who")), "Signed in as "+alice))
	table := text(t, ctx, id("sessions"))
	assert.Check(t, is.Contains(table, other))
	assert.Check(t, !strings.Contains(table, bobs), "alice's page shows bob's session %s:\n%s", bobs, table)
	location := get(t, ctx, chromedp.Location())
	assert.Check(t, !strings.Contains(location, "MUNGE"), "the login link stayed in the address bar: %s", location)
	cells := get(t, ctx, chromedp.Evaluate[[]string](fmt.Sprintf(`[...document.querySelectorAll('%s > *')].map(c => c.textContent)`, row(ctr))))
	assert.Assert(t, is.Len(cells, 8), "%q", cells)
	assert.Check(t, is.DeepEqual(cells[:5], []string{ctr, n1, job, baseImage, "running"}))

	// The page redraws its sessions every few seconds: a keyboard user's
	// place on a Commit button stays through that.
	do(t, ctx, 10*time.Second, chromedp.Focus(css("%s button.commit", row(other))))
	sessionsRefreshed(t, ctx)
	focused := get(t, ctx, chromedp.Evaluate[string](`(b => b && b.matches("button.commit") ? b.closest("tr").dataset.session : String(b && b.tagName))(document.activeElement)`))
	assert.Check(t, is.Equal(focused, other), "a refresh of the sessions took the focus from the Commit button of %s", other)

	// A name the agent refuses: the row says why, in words, and nothing runs.
	do(t, ctx, 20*time.Second,
		chromedp.Click(css("%s button.commit", row(ctr))),
		chromedp.WaitVisible(id("commit-dialog")),
		chromedp.SendKeys(id("commit-image"), "Not An Image!"),
		chromedp.Click(id("commit-submit")),
		chromedp.WaitVisible(css("%s .result .error", row(ctr))),
		chromedp.WaitVisible(css("%s button.commit:not([disabled])", row(ctr))),
	)
	refused := text(t, ctx, css("%s .result .error", row(ctr)))
	assert.Check(t, is.Contains(refused, "Not An Image!"))
	assert.Check(t, is.Len(listDir(t, filepath.Join(c.save, "site", alice)), 0), "a refused freeze wrote something")

	// Escape closes the dialog and starts nothing, even after a Commit.
	do(t, ctx, 20*time.Second,
		chromedp.Click(css("%s button.commit", row(other))),
		chromedp.WaitVisible(id("commit-dialog")),
		chromedp.KeyEvent(kb.Escape),
		chromedp.WaitNotVisible(id("commit-dialog")),
	)
	time.Sleep(500 * time.Millisecond) // a freeze Escape started would be pending by now
	assert.Check(t, is.Len(get(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('button.commit[disabled]')].map(b => b.closest("tr").dataset.session)`)), 0))
	ts, err := c.agents[n1].client(t).Tasks(context.Background())
	assert.NilError(t, err)
	assert.Check(t, is.Len(ts, 0), "a closed dialog started a freeze")

	// Press Commit, name the image, and watch the button. Every control,
	// the dialog's too, has a name a screen reader can say.
	assert.Check(t, is.Len(unnamedControls(t, ctx), 0), "controls without a name on the sessions view")
	busy := css(`%s button.commit[aria-busy="true"][disabled] .spinner`, row(ctr))
	do(t, ctx, 20*time.Second,
		chromedp.Click(css("%s button.commit", row(ctr))),
		chromedp.WaitVisible(id("commit-dialog")),
		chromedp.SendKeys(id("commit-image"), "localhost/e2e/web:v1"),
	)
	assert.Check(t, is.Len(unnamedControls(t, ctx), 0), "controls without a name in the Commit dialog")
	t1 := time.Now()
	do(t, ctx, 20*time.Second,
		chromedp.Click(id("commit-submit")),
		chromedp.WaitVisible(busy),
	)
	pressed := time.Since(t1)
	// Running (the button names its task); a reload keeps it spinning: the
	// state is the agent's, not the page's.
	running := css(`%s button.commit[aria-busy="true"][disabled][data-task$=".%s"] .spinner`, row(ctr), n1)
	do(t, ctx, 20*time.Second, chromedp.WaitVisible(running), chromedp.Reload(), chromedp.WaitVisible(running))
	screenshot(t, ctx, "web-sessions-freezing")
	label := attr(t, ctx, css("%s button.commit", row(ctr)), "aria-label")
	assert.Check(t, is.Equal(label, "Freezing "+ctr))
	taskID := attr(t, ctx, css("%s button.commit", row(ctr)), "data-task")
	assert.Check(t, strings.HasSuffix(taskID, "."+n1), "the spinning button names no task of node %s: %q", n1, taskID)

	// A freeze started from the CLI spins too.
	r := m.cli(t, alice, "commit", "--node", n1, "--json", other)
	assert.Equal(t, r.code, 0, "%s", r)
	otherTask := decodeTask(t, r)
	do(t, ctx, 20*time.Second, chromedp.Reload(), chromedp.WaitVisible(css("%s button.commit", row(other))))

	// Both end; the rows show archive, size and digest.
	do(t, ctx, 4*time.Minute,
		chromedp.WaitVisible(css("%s .archive-path", row(ctr))),
		chromedp.WaitVisible(css("%s button.commit:not([disabled])", row(ctr))),
	)
	shown := time.Now()
	do(t, ctx, 4*time.Minute, chromedp.WaitVisible(css("%s .archive-path", row(other))))
	path := text(t, ctx, css("%s .archive-path", row(ctr)))
	size := text(t, ctx, css("%s .archive-size", row(ctr)))
	digest := attr(t, ctx, css("%s .archive-digest", row(ctr)), "data-digest")
	otherPath := text(t, ctx, css("%s .archive-path", row(other)))
	seen := get(t, ctx, chromedp.Evaluate[map[string]int](`window.__busySeen`))
	assert.Check(t, seen[other] > 0, "the CLI's freeze of %s never showed a spinning button (seen: %v)", other, seen)
	screenshot(t, ctx, "web-sessions")

	assert.Check(t, is.Equal(filepath.Dir(path), filepath.Join(c.save, "site", alice)))
	st, err := os.Stat(path)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(st.Sys().(*syscall.Stat_t).Uid, uidOf(t, alice)))
	assert.Check(t, is.Equal(digest, "sha256:"+fileSHA256(t, path)))
	assert.Check(t, strings.HasSuffix(size, "MiB"), size)
	sc, err := archives.ReadSidecar(strings.TrimSuffix(path, ".tar.gz") + ".json")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(sc.Image, "localhost/e2e/web:v1"))
	assert.Check(t, is.Equal(sc.Job, job))
	assert.Check(t, is.Equal(fileInArchive(t, alice, path, "/root/web.txt"), "frozen-from-the-web"))
	st2 := m.cli(t, alice, "status", "--json", otherTask.ID)
	assert.Equal(t, st2.code, 0, "%s", st2)
	assert.Check(t, is.Equal(otherPath, decodeTask(t, st2).Archive.Path), "the row of %s shows another archive than its CLI freeze's", other)
	st3 := m.cli(t, alice, "status", "--json", taskID)
	assert.Equal(t, st3.code, 0, "%s", st3)
	done := decodeTask(t, st3)
	assert.Check(t, is.Equal(done.Archive.Path, path), "the row shows another archive than its task's")
	ended := done.Finished
	t.Logf("WEB: link to rows shown %s; Commit pressed to spinner %s; freeze ended to archive in the row %s",
		signedIn.Round(time.Millisecond), pressed.Round(time.Millisecond), shown.Sub(ended).Round(time.Millisecond))

	// The frozen images, newest first, each with a restore command.
	restore := css(`tr[data-archive=%q] .restore-cmd`, path)
	do(t, ctx, 30*time.Second, chromedp.Click(id("nav-images")), chromedp.WaitVisible(restore))
	cmd := text(t, ctx, restore)
	order := get(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#images tbody tr')].map(r => r.dataset.archive)`))
	want := []string{path, otherPath}
	osc, err := archives.ReadSidecar(strings.TrimSuffix(otherPath, ".tar.gz") + ".json")
	assert.NilError(t, err)
	if osc.Created.After(sc.Created) {
		want = []string{otherPath, path}
	}
	assert.Check(t, is.DeepEqual(order, want), "not newest first")
	assert.Check(t, is.Equal(cmd, "baicommit restore "+path))
	screenshot(t, ctx, "web-images")
	argv := strings.Fields(cmd)
	r = runAs(t, alice, append([]string{bins.cli}, argv[1:]...)...)
	assert.Equal(t, r.code, 0, "the page's restore command: %s", r)

	// Scripts cannot read the session cookie; the other replica accepts it
	// (the manager keeps no state).
	assert.Check(t, is.Equal(get(t, ctx, chromedp.Evaluate[string](`document.cookie`)), ""), "the session cookie is readable by scripts")
	do(t, ctx, 20*time.Second, chromedp.Navigate(c.managers[1].url+"/web/"), chromedp.WaitVisible(css("%s", row(ctr))))
	assert.Check(t, is.Equal(text(t, ctx, id("who")), "Signed in as "+alice))

	// Neither replica logged the login link's credential.
	_, escaped, _ := strings.Cut(link.URL, "#")
	cred, err := url.PathUnescape(escaped)
	assert.NilError(t, err)
	for _, mp := range c.managers {
		for _, form := range []string{cred, escaped} {
			assert.Check(t, !strings.Contains(mp.log.String(), form[10:40]), "a manager logged the login link")
		}
	}

	// Signing out.
	do(t, ctx, 10*time.Second, chromedp.Click(id("signout")), chromedp.WaitVisible(id("signed-out")),
		chromedp.Reload(), chromedp.WaitVisible(id("signed-out")))
	assert.Check(t, is.Contains(text(t, ctx, id("signed-out-why")), "baicommit web"))
}

// Links that are forged, made by a user rather than the manager, expired
// or used already sign nobody in, and the page says why.
func TestWebLoginLinkRefused(t *testing.T) {
	c := newCluster(t, []string{"bcn1"}, 1, nil, `web_link_ttl = "3s"`)
	m := c.managers[0]
	ctx := newBrowser(t)
	signIn := func(t *testing.T, ctx context.Context, url string) string {
		t.Helper()
		do(t, ctx, 30*time.Second,
			// From elsewhere: a new link on the same page changes only the fragment.
			chromedp.Navigate("about:blank"),
			chromedp.Navigate(url),
			chromedp.WaitEnabled(id("signin")),
			chromedp.Click(id("signin")),
			chromedp.WaitVisible(css("#login-status.error")),
		)
		msg := text(t, ctx, id("login-status"))
		// Still signed out.
		status := get(t, ctx, chromedp.Evaluate[int](`fetch("api/me").then(r => r.status)`, chromedp.EvalAwaitPromise))
		assert.Check(t, is.Equal(status, 401), "signed in after: %s", msg)
		return msg
	}

	// Not a credential at all.
	msg := signIn(t, ctx, m.url+"/web/login#MUNGE:AwQFAAB3ZWxsIHRoaXMgaXMgbm90IGEgcmVhbCBvbmU=:")
	assert.Check(t, is.Contains(msg, "not a valid baicommit login link"))
	// A real credential, made by alice to claim root: not the manager's.
	r := runAsIn(t, alice, strings.NewReader("baicommit-web-login/1\n0\nroot"), "munge")
	assert.Equal(t, r.code, 0, "%s", r)
	msg = signIn(t, ctx, m.url+"/web/login#"+strings.TrimSpace(r.stdout))
	assert.Check(t, is.Contains(msg, "not a login link of this site"))
	screenshot(t, ctx, "web-login-refused")

	// Expired: the link outlived web_link_ttl.
	l := webLink(t, m, alice)
	time.Sleep(4 * time.Second)
	msg = signIn(t, ctx, l.URL)
	assert.Check(t, is.Contains(msg, "expired"))
	assert.Check(t, is.Contains(msg, "baicommit web"))

	// Used already: the first browser signs in, the second one cannot (on
	// a replica with the default lifetime, so that only the use counts).
	m = startManager(t, c.urls)
	second := newBrowser(t)
	l = webLink(t, m, alice)
	do(t, ctx, 30*time.Second, chromedp.Navigate("about:blank"), chromedp.Navigate(l.URL), chromedp.WaitEnabled(id("signin")),
		chromedp.Click(id("signin")), chromedp.WaitVisible(id("view-sessions")))
	assert.Check(t, is.Equal(text(t, ctx, id("who")), "Signed in as "+alice))
	msg = signIn(t, second, l.URL)
	assert.Check(t, is.Contains(msg, "used already"))
}

// The images view shows what one keeps against the quota; Delete asks
// first ("Keep it" keeps it), then removes the archive and its sidecar,
// and the usage follows.
func TestWebDeleteArchive(t *testing.T) {
	n1 := slurmNode(t)
	c := newCluster(t, []string{n1}, 1, nil, `quota = {max_archives = 5}`)
	m := c.managers[0]
	ctr := session(t, alice, "echo delete-me > /root/d.txt")
	var paths []string
	for range 2 {
		r := m.cli(t, alice, "commit", "--node", n1, "--wait", "--json", ctr)
		assert.Assert(t, is.Equal(r.code, 0), "%s", r)
		paths = append(paths, decodeTask(t, r).Archive.Path)
	}
	ctx := newBrowser(t)
	do(t, ctx, 60*time.Second,
		chromedp.Navigate(webLink(t, m, alice).URL),
		chromedp.WaitEnabled(id("signin")),
		chromedp.Click(id("signin")),
		chromedp.WaitVisible(id("nav-images")),
		chromedp.Click(id("nav-images")),
		chromedp.WaitVisible(css(`tr[data-archive=%q] button.delete`, paths[0])),
	)
	assert.Check(t, is.Contains(text(t, ctx, id("usage")), "You keep 2 of 5 archives"))
	assert.Check(t, is.Len(unnamedControls(t, ctx), 0), "controls without a name on the images view")

	del := css(`tr[data-archive=%q] button.delete`, paths[0])
	do(t, ctx, 20*time.Second,
		chromedp.Click(del),
		chromedp.WaitVisible(id("delete-dialog")),
		chromedp.Click(id("delete-cancel")),
		chromedp.WaitNotVisible(id("delete-dialog")),
	)
	time.Sleep(500 * time.Millisecond) // a removal "Keep it" started would be done by now
	_, err := os.Stat(paths[0])
	assert.Check(t, err, "Keep it removed the archive")

	do(t, ctx, 20*time.Second,
		chromedp.Click(del),
		chromedp.WaitVisible(id("delete-dialog")),
	)
	assert.Check(t, is.Equal(text(t, ctx, id("delete-path")), paths[0]))
	do(t, ctx, 30*time.Second,
		chromedp.Click(id("delete-submit")),
		chromedp.WaitNotPresent(css(`tr[data-archive=%q]`, paths[0])),
		chromedp.WaitVisible(css(`tr[data-archive=%q]`, paths[1])),
	)
	_, err = os.Stat(paths[0])
	assert.Check(t, os.IsNotExist(err), "the archive is still there: %v", err)
	_, err = os.Stat(strings.TrimSuffix(paths[0], api.ArchiveSuffix) + api.SidecarSuffix)
	assert.Check(t, os.IsNotExist(err), "the sidecar is still there: %v", err)
	assert.Check(t, is.Contains(text(t, ctx, id("usage")), "You keep 1 of 5 archives"))
	screenshot(t, ctx, "web-images-deleted")
}

// The Commit dialog offers the site's formats (the manager's formats):
// choosing the layer store freezes into the store the manager's
// store_path names, the row shows the store image, the images view lists
// it, and its restore command works.
func TestWebCommitIntoStore(t *testing.T) {
	n1 := slurmNode(t)
	c := newCluster(t, []string{n1}, 0, nil)
	m := startManager(t, c.urls, "save_path = "+strconv.Quote(c.save+"/site/{user}"),
		`formats = ["archive", "store"]`, `format = "archive"`, "store_path = "+strconv.Quote(c.save+"/stores/{user}"))
	job := sbatch(t, alice)
	ctr := session(t, alice, "echo into-the-store > /root/web.txt", "--label", api.LabelJob+"="+job)

	ctx := newBrowser(t)
	do(t, ctx, 60*time.Second,
		chromedp.Navigate(webLink(t, m, alice).URL),
		chromedp.WaitEnabled(id("signin")),
		chromedp.Click(id("signin")),
		chromedp.WaitVisible(css("%s button.commit", row(ctr))),
		chromedp.Click(css("%s button.commit", row(ctr))),
		chromedp.WaitVisible(id("commit-format")),
	)
	choices := get(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#commit-format option')].map(o => o.value)`))
	assert.Check(t, is.DeepEqual(choices, []string{api.FormatArchive, api.FormatStore}), "the site's formats")
	assert.Check(t, is.Equal(get(t, ctx, chromedp.Value(id("commit-format"))), api.FormatArchive), "the site's default first")
	assert.Check(t, is.Len(unnamedControls(t, ctx), 0), "controls without a name in the Commit dialog")
	do(t, ctx, 3*time.Minute,
		chromedp.SetValue(id("commit-format"), api.FormatStore),
		chromedp.Click(id("commit-submit")),
		chromedp.WaitVisible(css("%s .store-path", row(ctr))),
	)
	path := text(t, ctx, css("%s .store-path", row(ctr)))
	assert.Check(t, is.Equal(filepath.Dir(filepath.Dir(path)), filepath.Join(c.save, "stores", alice)), "the manager's store_path: %s", path)
	assert.Check(t, is.Len(listDir(t, filepath.Join(c.save, "site", alice)), 0), "no archive")
	screenshot(t, ctx, "web-sessions-store")

	restore := css(`tr[data-archive=%q] .restore-cmd`, path)
	do(t, ctx, 30*time.Second, chromedp.Click(id("nav-images")), chromedp.WaitVisible(restore))
	assert.Check(t, is.Contains(text(t, ctx, css(`tr[data-archive=%q]`, path)), "layer store"))
	cmd := text(t, ctx, restore)
	assert.Check(t, is.Equal(cmd, "baicommit restore "+path))
	r := runAs(t, alice, append([]string{bins.cli}, strings.Fields(cmd)[1:]...)...)
	assert.Assert(t, is.Equal(r.code, 0), "the page's restore command: %s", r)
	sc := readSidecar(t, filepath.Join(path, "baicommit.json"))
	t.Cleanup(func() { runAs(t, alice, "podman", "rmi", "-f", sc.Image) })
	assert.Check(t, is.Equal(podman(t, alice, "run", "--rm", "--network=none", sc.Image, "cat", "/root/web.txt"), "into-the-store"))
}
