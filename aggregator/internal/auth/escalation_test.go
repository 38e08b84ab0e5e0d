package auth

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/google/uuid"
)

// rootActor is an actor holding every permission with no scope limit, for
// setting up tests (it stands for no user: it is never anyone's self).
func rootActor() *Principal {
	return &Principal{Username: "test-root", SessionID: uuid.New(), Permissions: sortedUnique(AllPermissions())}
}

// actor returns u as a session principal, with its effective permissions
// and scope as the database has them now.
func (e *env) actor(t *testing.T, u *User) *Principal {
	t.Helper()
	ctx := context.Background()
	cur, err := e.svc.GetUser(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	perms, err := e.svc.UserPermissions(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	return &Principal{UserID: cur.ID, Username: cur.Username, SessionID: uuid.New(), Roles: cur.Roles, Permissions: perms, Scope: cur.Scope}
}

func TestScopeWithin(t *testing.T) {
	all := Scope{}
	cases := []struct {
		name string
		s, c Scope
		want bool
	}{
		{"unrestricted in unrestricted", all, all, true},
		{"restricted in unrestricted", Scope{Sites: []string{"a"}}, all, true},
		{"unrestricted in restricted", all, Scope{Sites: []string{"a"}}, false},
		{"empty lists are unrestricted", Scope{Sites: []string{}, VMGroups: []string{}}, Scope{Sites: []string{"a"}}, false},
		{"same sites", Scope{Sites: []string{"a", "b"}}, Scope{Sites: []string{"b", "a"}}, true},
		{"fewer sites", Scope{Sites: []string{"a"}}, Scope{Sites: []string{"a", "b"}}, true},
		{"another site", Scope{Sites: []string{"a", "c"}}, Scope{Sites: []string{"a", "b"}}, false},
		{"a group the caller lacks", Scope{Sites: []string{"a"}, VMGroups: []string{"g"}}, Scope{Sites: []string{"a"}}, false},
		{"groups only, within", Scope{VMGroups: []string{"g"}}, Scope{Sites: []string{"a"}, VMGroups: []string{"g", "h"}}, true},
		{"a site against groups only", Scope{Sites: []string{"a"}}, Scope{VMGroups: []string{"g"}}, false},
		{"both dimensions within", Scope{Sites: []string{"a"}, VMGroups: []string{"h"}}, Scope{Sites: []string{"a", "b"}, VMGroups: []string{"g", "h"}}, true},
	}
	for _, c := range cases {
		if got := c.s.Within(c.c); got != c.want {
			t.Errorf("%s: %+v.Within(%+v) = %v; want %v", c.name, c.s, c.c, got, c.want)
		}
	}
}

func TestMissingPermissions(t *testing.T) {
	have := []string{PermUserWrite, PermVMRead}
	if got := missingPermissions([]string{PermVMRead, PermUserWrite, PermVMRead}, have); len(got) != 0 {
		t.Errorf("subset: missing = %v; want none", got)
	}
	if got := missingPermissions(nil, nil); len(got) != 0 {
		t.Errorf("empty: missing = %v; want none", got)
	}
	got := missingPermissions([]string{PermRoleWrite, PermVMRead, PermAuditRead, PermRoleWrite}, have)
	if want := []string{PermAuditRead, PermRoleWrite}; !slices.Equal(got, want) {
		t.Errorf("missing = %v; want %v (sorted, once each)", got, want)
	}
}

func TestCheckGrant(t *testing.T) {
	mgr := &Principal{UserID: uuid.New(), SessionID: uuid.New(), Permissions: []string{PermUserRead, PermUserWrite, PermVMRead}, Scope: Scope{Sites: []string{"dc1", "lab"}}}
	lab := Scope{Sites: []string{"lab"}}
	if err := CheckGrant(mgr, []string{PermVMRead, PermUserRead}, &lab); err != nil {
		t.Errorf("grant within: %v", err)
	}
	if err := CheckGrant(mgr, nil, nil); err != nil {
		t.Errorf("empty grant: %v", err)
	}
	var esc *EscalationError
	err := CheckGrant(mgr, []string{PermVMRead, PermRoleWrite}, nil)
	if !errors.Is(err, ErrEscalation) || !errors.As(err, &esc) || !slices.Equal(esc.Missing, []string{PermRoleWrite}) || esc.Scope {
		t.Errorf("grant of role:write = %v (%+v); want ErrEscalation missing role:write", err, esc)
	}
	for _, sc := range []Scope{{}, {Sites: []string{"dc2"}}, {Sites: []string{"lab"}, VMGroups: []string{"g"}}} {
		err := CheckGrant(mgr, nil, &sc)
		if !errors.As(err, &esc) || !esc.Scope || len(esc.Missing) != 0 {
			t.Errorf("grant of scope %+v = %v; want a scope EscalationError", sc, err)
		}
	}
	if err := CheckGrant(nil, nil, nil); err == nil || errors.Is(err, ErrEscalation) {
		t.Errorf("no actor = %v; want errNoActor", err)
	}
	// What a user holds beyond the actor is not spelled out.
	err = checkOver(mgr, "user", AllPermissions(), &Scope{})
	if !errors.As(err, &esc) || len(esc.Missing) != 0 || !esc.Scope || esc.Subject != "user" {
		t.Errorf("checkOver an admin = %v (%+v)", err, esc)
	}
}

// TestNoEscalationOverUsers: a user manager (user:read, user:write and a
// viewer's permissions, restricted to two sites) cannot raise themselves,
// act on an administrator, or grant roles or scope beyond their own; they
// can manage a viewer within their scope. Administrators still can do it
// all.
func TestNoEscalationOverUsers(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	root := rootActor()
	if _, err := e.svc.CreateRole(ctx, root, RoleInput{Name: "user-managers", Parents: []string{RoleViewer}}, []string{PermUserRead, PermUserWrite}); err != nil {
		t.Fatal(err)
	}
	admin := e.user(t, "root", RoleAdmin)
	mgrUser := e.user(t, "mallory", "user-managers")
	if _, err := e.svc.SetUserScope(ctx, root, mgrUser.ID, Scope{Sites: []string{"dc1", "lab"}}); err != nil {
		t.Fatal(err)
	}
	mgr := e.actor(t, mgrUser)
	victim := e.user(t, "victor", RoleViewer)
	if _, err := e.svc.SetUserScope(ctx, root, victim.ID, Scope{Sites: []string{"lab"}}); err != nil {
		t.Fatal(err)
	}

	// Nobody changes their own roles or scope.
	if _, err := e.svc.SetUserRoles(ctx, mgr, mgrUser.ID, []string{RoleAdmin}); !errors.Is(err, ErrSelfModification) {
		t.Errorf("own roles = %v; want ErrSelfModification", err)
	}
	if _, err := e.svc.SetUserScope(ctx, mgr, mgrUser.ID, Scope{}); !errors.Is(err, ErrSelfModification) {
		t.Errorf("own scope = %v; want ErrSelfModification", err)
	}
	if _, err := e.svc.SetUserRoles(ctx, e.actor(t, admin), admin.ID, []string{RoleAdmin}); !errors.Is(err, ErrSelfModification) {
		t.Errorf("an admin's own roles = %v; want ErrSelfModification", err)
	}

	// Nothing is done to a user who holds more.
	steps := map[string]func() error{
		"reset password": func() error { _, err := e.svc.ResetPassword(ctx, mgr, admin.ID, ""); return err },
		"lock":           func() error { return e.svc.LockUser(ctx, mgr, admin.ID) },
		"unlock":         func() error { return e.svc.UnlockUser(ctx, mgr, admin.ID) },
		"delete":         func() error { return e.svc.DeleteUser(ctx, mgr, admin.ID) },
		"edit": func() error {
			_, err := e.svc.UpdateUser(ctx, mgr, admin.ID, UserInput{Username: "root", Email: "mallory@example.com"})
			return err
		},
		"set roles": func() error { _, err := e.svc.SetUserRoles(ctx, mgr, admin.ID, []string{RoleViewer}); return err },
		"set scope": func() error {
			_, err := e.svc.SetUserScope(ctx, mgr, admin.ID, Scope{Sites: []string{"lab"}})
			return err
		},
	}
	for name, step := range steps {
		if err := step(); !errors.Is(err, ErrEscalation) {
			t.Errorf("%s of an admin by a user manager = %v; want ErrEscalation", name, err)
		}
	}
	if u, _ := e.svc.GetUser(ctx, admin.ID); u.Locked || u.Email != "root@example.com" || !slices.Equal(u.Roles, []string{RoleAdmin}) || !u.Scope.Unrestricted() {
		t.Errorf("the admin changed anyway: %+v", u)
	}
	e.login(t, "root") // the password is unchanged

	// A viewer whose scope is wider than the manager's is beyond them too.
	wide := e.user(t, "wendy", RoleViewer)
	if err := e.svc.LockUser(ctx, mgr, wide.ID); !errors.Is(err, ErrEscalation) {
		t.Errorf("locking an unrestricted viewer = %v; want ErrEscalation", err)
	}

	// Grants beyond the manager's own are refused, and leave no trace.
	if _, err := e.svc.SetUserRoles(ctx, mgr, victim.ID, []string{RoleViewer, RoleOperator}); !errors.Is(err, ErrEscalation) {
		t.Errorf("granting operator = %v; want ErrEscalation", err)
	}
	for _, sc := range []Scope{{}, {Sites: []string{"dc2"}}, {Sites: []string{"lab"}, VMGroups: []string{"prod"}}} {
		if _, err := e.svc.SetUserScope(ctx, mgr, victim.ID, sc); !errors.Is(err, ErrEscalation) {
			t.Errorf("granting scope %+v = %v; want ErrEscalation", sc, err)
		}
	}
	if u, _ := e.svc.GetUser(ctx, victim.ID); !slices.Equal(u.Roles, []string{RoleViewer}) || !slices.Equal(u.Scope.Sites, []string{"lab"}) {
		t.Errorf("victor after refused grants = %+v", u)
	}
	if _, err := e.svc.CreateUser(ctx, mgr, UserInput{Username: "sock"}, goodPassword, []string{RoleAdmin}); !errors.Is(err, ErrEscalation) {
		t.Errorf("creating an admin = %v; want ErrEscalation", err)
	}
	var n int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM users WHERE username = 'sock'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("refused user was stored: %d %v", n, err)
	}

	// Within their own permissions and scope, the manager manages.
	if _, err := e.svc.SetUserScope(ctx, mgr, victim.ID, Scope{Sites: []string{"dc1", "lab"}}); err != nil {
		t.Errorf("scope within the manager's: %v", err)
	}
	if _, err := e.svc.SetUserRoles(ctx, mgr, victim.ID, []string{RoleViewer, "user-managers"}); err != nil {
		t.Errorf("granting the manager's own role: %v", err)
	}
	if _, err := e.svc.UpdateUser(ctx, mgr, victim.ID, UserInput{Username: "victor", DisplayName: "Victor"}); err != nil {
		t.Errorf("edit: %v", err)
	}
	if _, err := e.svc.ResetPassword(ctx, mgr, victim.ID, ""); err != nil {
		t.Errorf("reset password: %v", err)
	}
	if err := e.svc.LockUser(ctx, mgr, victim.ID); err != nil {
		t.Errorf("lock: %v", err)
	}
	if err := e.svc.UnlockUser(ctx, mgr, victim.ID); err != nil {
		t.Errorf("unlock: %v", err)
	}
	sub, err := e.svc.CreateUser(ctx, mgr, UserInput{Username: "newbie"}, goodPassword, []string{RoleViewer})
	if err != nil {
		t.Fatalf("creating a viewer: %v", err)
	}
	if !slices.Equal(sub.Scope.Sites, []string{"dc1", "lab"}) {
		t.Errorf("a restricted manager's new user has scope %+v; want the manager's", sub.Scope)
	}
	if err := e.svc.DeleteUser(ctx, mgr, sub.ID); err != nil {
		t.Errorf("delete: %v", err)
	}
	// Resetting one's own password goes through ChangePassword.
	if _, err := e.svc.ResetPassword(ctx, mgr, mgrUser.ID, ""); !errors.Is(err, ErrSelf) {
		t.Errorf("resetting your own password = %v; want ErrSelf", err)
	}

	// An administrator still does all of it.
	adm := e.actor(t, admin)
	if _, err := e.svc.SetUserRoles(ctx, adm, mgrUser.ID, []string{RoleAdmin}); err != nil {
		t.Errorf("admin grants admin: %v", err)
	}
	if _, err := e.svc.SetUserScope(ctx, adm, mgrUser.ID, Scope{}); err != nil {
		t.Errorf("admin grants an unrestricted scope: %v", err)
	}
	if _, err := e.svc.ResetPassword(ctx, adm, mgrUser.ID, ""); err != nil {
		t.Errorf("admin resets another admin's password: %v", err)
	}
	if err := e.svc.LockUser(ctx, adm, mgrUser.ID); err != nil {
		t.Errorf("admin locks another admin: %v", err)
	}
	if err := e.svc.UnlockUser(ctx, adm, mgrUser.ID); err != nil {
		t.Errorf("admin unlocks another admin: %v", err)
	}
	if err := e.svc.DeleteUser(ctx, adm, mgrUser.ID); err != nil {
		t.Errorf("admin deletes another admin: %v", err)
	}
	if err := e.svc.DeleteUser(ctx, adm, uuid.New()); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting a missing user = %v; want ErrNotFound", err)
	}
}

// TestNoEscalationThroughAPIToken: an API token acts with its own
// permissions, not its owner's.
func TestNoEscalationThroughAPIToken(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	admin := e.user(t, "root", RoleAdmin)
	op := e.user(t, "olga", RoleOperator)
	secret, _, err := e.svc.CreateAPIToken(ctx, e.actor(t, admin), "users-only", []string{PermUserRead, PermUserWrite}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := e.svc.Authenticate(ctx, secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ResetPassword(ctx, tok, op.ID, ""); !errors.Is(err, ErrEscalation) {
		t.Errorf("a user:write token resetting an operator = %v; want ErrEscalation", err)
	}
	if _, err := e.svc.SetUserRoles(ctx, tok, op.ID, []string{RoleViewer}); !errors.Is(err, ErrEscalation) {
		t.Errorf("a user:write token changing an operator's roles = %v; want ErrEscalation", err)
	}
	if _, err := e.svc.SetUserRoles(ctx, tok, admin.ID, nil); !errors.Is(err, ErrSelfModification) {
		t.Errorf("a token changing its owner's roles = %v; want ErrSelfModification", err)
	}
	if _, _, err := e.svc.CreateAPIToken(ctx, tok, "child", nil, nil); !errors.Is(err, ErrSessionRequired) {
		t.Errorf("a token minting a token = %v; want ErrSessionRequired", err)
	}
}

// TestNoEscalationThroughRoles: a role manager cannot create or change a
// role so that it holds a permission they lack, directly or through its
// parents, nor change or delete a role that holds more than they do.
func TestNoEscalationThroughRoles(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	root := rootActor()
	if _, err := e.svc.CreateRole(ctx, root, RoleInput{Name: "role-managers", Parents: []string{RoleViewer}}, []string{PermRoleRead, PermRoleWrite}); err != nil {
		t.Fatal(err)
	}
	admin := e.user(t, "root", RoleAdmin) // role changes keep one administrator
	mgrUser := e.user(t, "rita", "role-managers")
	mgr := e.actor(t, mgrUser)
	big, err := e.svc.CreateRole(ctx, root, RoleInput{Name: "big"}, []string{PermSystemWrite, PermVMRead})
	if err != nil {
		t.Fatal(err)
	}
	small, err := e.svc.CreateRole(ctx, mgr, RoleInput{Name: "small", Parents: []string{RoleViewer}}, []string{PermRoleRead})
	if err != nil {
		t.Fatalf("creating a role within one's own permissions: %v", err)
	}

	var esc *EscalationError
	if _, err := e.svc.CreateRole(ctx, mgr, RoleInput{Name: "sneaky"}, []string{PermVMRead, PermUserWrite}); !errors.As(err, &esc) || !slices.Equal(esc.Missing, []string{PermUserWrite}) {
		t.Errorf("creating a role with user:write = %v; want an EscalationError missing user:write", err)
	}
	if _, err := e.svc.CreateRole(ctx, mgr, RoleInput{Name: "heir", Parents: []string{RoleAdmin}}, nil); !errors.Is(err, ErrEscalation) {
		t.Errorf("creating a role inheriting admin = %v; want ErrEscalation", err)
	}
	if _, err := e.svc.SetRolePermissions(ctx, mgr, small.ID, []string{PermRoleRead, PermBackupAdmin}); !errors.Is(err, ErrEscalation) {
		t.Errorf("adding backup:admin = %v; want ErrEscalation", err)
	}
	if _, err := e.svc.UpdateRole(ctx, mgr, small.ID, RoleInput{Name: "small", Parents: []string{RoleViewer, RoleOperator}}); !errors.Is(err, ErrEscalation) {
		t.Errorf("inheriting operator = %v; want ErrEscalation", err)
	}
	// The refused changes left no trace.
	if r, _ := e.svc.GetRole(ctx, small.ID); !slices.Equal(r.Permissions, []string{PermRoleRead}) || !slices.Equal(r.Parents, []string{RoleViewer}) {
		t.Errorf("small after refused changes = %+v", r)
	}
	if roles, _ := e.svc.ListRoles(ctx); slices.ContainsFunc(roles, func(r Role) bool { return r.Name == "sneaky" || r.Name == "heir" }) {
		t.Error("a refused role was stored")
	}
	// A role beyond the manager is out of reach, even to take away from.
	if _, err := e.svc.SetRolePermissions(ctx, mgr, big.ID, nil); !errors.Is(err, ErrEscalation) {
		t.Errorf("editing a bigger role = %v; want ErrEscalation", err)
	}
	if _, err := e.svc.UpdateRole(ctx, mgr, big.ID, RoleInput{Name: "bigger"}); !errors.Is(err, ErrEscalation) {
		t.Errorf("renaming a bigger role = %v; want ErrEscalation", err)
	}
	if err := e.svc.DeleteRole(ctx, mgr, big.ID); !errors.Is(err, ErrEscalation) {
		t.Errorf("deleting a bigger role = %v; want ErrEscalation", err)
	}
	// Within their permissions, the manager manages.
	if _, err := e.svc.SetRolePermissions(ctx, mgr, small.ID, []string{PermRoleRead, PermRoleWrite}); err != nil {
		t.Errorf("adding role:write: %v", err)
	}
	if _, err := e.svc.UpdateRole(ctx, mgr, small.ID, RoleInput{Name: "small", Parents: nil}); err != nil {
		t.Errorf("dropping a parent: %v", err)
	}
	// A manager restricted to one site cannot add permissions to a role
	// that unrestricted users hold: the permissions would reach every site.
	e.user(t, "ursula", "small")
	if _, err := e.svc.SetUserScope(ctx, root, mgrUser.ID, Scope{Sites: []string{"lab"}}); err != nil {
		t.Fatal(err)
	}
	mgr = e.actor(t, mgrUser)
	if _, err := e.svc.SetRolePermissions(ctx, mgr, small.ID, []string{PermRoleRead, PermRoleWrite, PermVMRead}); !errors.As(err, &esc) || !esc.Scope {
		t.Errorf("a restricted manager widening a role unrestricted users hold = %v; want a scope EscalationError", err)
	}
	if _, err := e.svc.SetRolePermissions(ctx, mgr, small.ID, []string{PermRoleRead}); err != nil {
		t.Errorf("a restricted manager narrowing the role: %v", err)
	}
	if err := e.svc.DeleteRole(ctx, mgr, small.ID); err != nil {
		t.Errorf("deleting a role within one's own permissions: %v", err)
	}
	// An administrator still does all of it.
	adm := e.actor(t, admin)
	if _, err := e.svc.UpdateRole(ctx, adm, big.ID, RoleInput{Name: "big", Parents: []string{RoleAdmin}}); err != nil {
		t.Errorf("admin makes a role inherit admin: %v", err)
	}
	if err := e.svc.DeleteRole(ctx, adm, big.ID); err != nil {
		t.Errorf("admin deletes a role: %v", err)
	}
}
