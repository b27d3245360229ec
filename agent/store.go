package agent

import (
	"path/filepath"
	"strconv"

	"github.com/baicommit/baicommit/internal/identity"
	"github.com/baicommit/baicommit/policy"
)

// storeFor is u's layer store and the save root it lies below: the site's
// store_path (the one the manager passes, or the agent's own), expanded
// for u and u's primary group, checked as a freeze's destination is. place
// is the policy placement gave for the request.
func (a *Agent) storeFor(c Caller, place *policy.Policy, u *identity.User, storePath string) (dir, root string, err error) {
	p := *place
	if storePath != "" {
		if !c.Relayed && c.UID != 0 {
			return "", "", userErr(KindForbidden, "store_path is set by the site (the manager or the agent's configuration), not per request")
		}
		if !filepath.IsAbs(storePath) || filepath.Clean(storePath) != storePath {
			return "", "", userErr(KindInvalid, "store_path %q must be a clean absolute path template", storePath)
		}
		p.StorePath = storePath
	}
	dir, root, err = p.StoreDir(policy.Vars{User: u.Name, UID: strconv.Itoa(u.UID), Group: u.Group})
	if err != nil {
		return "", "", &Error{Kind: KindInvalid, Err: err, Msg: "cannot place the layer store: " + err.Error()}
	}
	return dir, root, nil
}
