# failures.awk: from the output of go test -v, what each failing test said
# (its file:line messages and their continuation lines), without the
# daemon logs and screenshots it printed around them. Used by test.sh.
/^=== (RUN|CONT|PAUSE|NAME)/ { cur = $3; keep = 0; next }
/^ *--- FAIL: / { failed[$3] = 1; order[++n] = $3; keep = 0; next }
/_test\.go:[0-9]+: / {
    keep = ($0 !~ /: screenshot[: ]/ && $0 !~ / log:$/)
    more = 0
    if (keep) said[cur] = said[cur] substr($0, 1, 400) "\n"
    next
}
keep && /^        / && more < 8 { said[cur] = said[cur] substr($0, 1, 400) "\n"; more++; next }
{ keep = 0 }
END {
    for (i = 1; i <= n; i++) {
        t = order[i]
        printf "--- FAIL: %s\n%s", t, said[t]
    }
}
