package e2e

import (
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/chromedp/chromedp"
)

// vmEditors creates a VM group on the groups page (a bad label rule is
// refused beside its field first), edits web-01's operator fields on its
// page and finds them after a reload, has a bad label key refused beside
// its row, adds the VM to the group and finds it counted on the groups
// page, removes it again and deletes the group; axe-core checks the pages
// and the editors. It returns the groups page for the language checks.
func vmEditors(b *browser, base, axe string, f fleet) []page {
	t := b.t
	t.Helper()
	b.visit(base, axe, "vm groups", "/vm-groups", `[data-testid=group-new]`)
	b.do("new group form", 20*time.Second,
		chromedp.Click(chromedp.CSS(`[data-testid=group-new]`)),
		chromedp.WaitVisible(chromedp.CSS(`#vg-name`)),
		typeInto(`#vg-name`, "e2e-web"),
		typeInto(`#vg-desc`, "web VMs"),
		typeInto(`#vg-labels`, "no value"),
		chromedp.Click(chromedp.CSS(`[data-testid=group-save]`)),
		chromedp.WaitVisible(chromedp.CSS(`.field-error[data-field="rule.labels"]`)),
	)
	b.axe("vm group form", axe)
	b.do("create group", 20*time.Second,
		typeInto(`#vg-labels`, ""),
		chromedp.Click(chromedp.CSS(`[data-testid=group-save]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-vm-group="e2e-web"]`)),
	)
	gid := run(b, "group id", chromedp.AttributeValue(chromedp.CSS(`tr[data-vm-group="e2e-web"]`), "data-id")).Value
	b.check("group created", gid != "", "the new group has no id")
	vmPath := "/vms/" + url.PathEscape(f.web01)

	b.visit(base, axe, "vm editor", vmPath, `#vme-desc`, `[data-testid=vm-group-add]`)
	b.do("vm editor groups", 20*time.Second, chromedp.WaitReady(chromedp.CSS(`#vme-group option[value="`+gid+`"]`)))
	last := run(b, "label rows", chromedp.Evaluate[int](`document.querySelectorAll('[data-label-row]').length - 1`))
	row := strconv.Itoa(last)
	b.do("bad label key", 20*time.Second,
		typeInto(`#vme-lk-`+row, "-bad key"),
		chromedp.Click(chromedp.CSS(`[data-testid=vm-fields-save]`)),
		chromedp.WaitVisible(chromedp.CSS(`.field-error[data-field="labels[`+row+`]"]`)),
	)
	b.axe("vm editor field error", axe)
	b.do("edit vm fields", 20*time.Second,
		typeInto(`#vme-desc`, "e2e: the shop's front end"),
		typeInto(`#vme-owner`, "alice@example.com"),
		typeInto(`#vme-lk-`+row, "env"),
		typeInto(`#vme-lv-`+row, "prod"),
		chromedp.Click(chromedp.CSS(`[data-testid=vm-fields-save]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=vm-fields-form] [role=status]`)),
	)
	b.do("reload vm", 20*time.Second, chromedp.Navigate(base+vmPath), chromedp.WaitVisible(chromedp.CSS(`#vme-desc`)))
	saved := run(b, "saved fields", chromedp.Evaluate[struct {
		Desc     string `json:"desc"`
		Owner    string `json:"owner"`
		Operator string `json:"operator"`
	}](`({desc: document.querySelector('#vme-desc').value, owner: document.querySelector('#vme-owner').value,
		operator: document.querySelector('section[aria-label="Operator fields"]')?.innerText ?? ''})`))
	b.check("vm fields saved", saved.Desc == "e2e: the shop's front end" && saved.Owner == "alice@example.com" && strings.Contains(saved.Operator, "env=prod"),
		"after a reload: %+v, want the description, the owner and env=prod", saved)

	b.do("add to group", 20*time.Second,
		chromedp.WaitReady(chromedp.CSS(`#vme-group option[value="`+gid+`"]`)),
		chromedp.Evaluate[chromedp.Void](`(() => { const s = document.querySelector('#vme-group'); s.value = '`+gid+`';
			s.dispatchEvent(new Event('change', {bubbles: true})); })()`),
		chromedp.Click(chromedp.CSS(`[data-testid=vm-group-add]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=vm-groups] li[data-group="`+gid+`"][data-membership="static"]`)),
	)
	b.axe("vm groups editor", axe)
	b.do("reload vm groups", 20*time.Second,
		chromedp.Navigate(base+vmPath),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=vm-groups] li[data-group="`+gid+`"]`)),
	)
	b.do("remove from group", 20*time.Second,
		chromedp.Click(chromedp.CSS(`button[data-group-remove="`+gid+`"]`)),
		chromedp.WaitReady(chromedp.CSS(`#vme-group option[value="`+gid+`"]`)),
	)
	gone := run(b, "membership removed", chromedp.Evaluate[bool](`!document.querySelector('[data-testid=vm-groups] li[data-group="`+gid+`"]')`))
	b.check("membership removed", gone, "web-01 is still listed in group %s after its removal", gid)

	// Added again, the groups page counts it and links to the filtered VM list.
	b.do("add to group again", 20*time.Second,
		chromedp.Evaluate[chromedp.Void](`(() => { const s = document.querySelector('#vme-group'); s.value = '`+gid+`';
			s.dispatchEvent(new Event('change', {bubbles: true})); })()`),
		chromedp.Click(chromedp.CSS(`[data-testid=vm-group-add]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=vm-groups] li[data-group="`+gid+`"]`)),
	)
	b.visit(base, axe, "vm groups members", "/vm-groups", `tr[data-vm-group="e2e-web"] a[data-members="1"]`)
	b.do("group members", 20*time.Second,
		chromedp.Click(chromedp.CSS(`tr[data-vm-group="e2e-web"] a[data-members]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-vm="`+f.web01+`"]`)),
	)
	rows := run(b, "group member rows", chromedp.Evaluate[int](`document.querySelectorAll('[data-vm]').length`))
	b.check("group members listed", rows == 1, "the VM list of group %s shows %d rows, want web-01 only", gid, rows)

	// A second group, then deleted from the list (the browser's confirm answered yes).
	b.do("create and delete a group", 30*time.Second,
		chromedp.Navigate(base+"/vm-groups"),
		chromedp.Click(chromedp.CSS(`[data-testid=group-new]`)),
		chromedp.WaitVisible(chromedp.CSS(`#vg-name`)),
		typeInto(`#vg-name`, "e2e-db"),
		typeInto(`#vg-name_glob`, "db-*"),
		typeInto(`#vg-site`, "dc-east"),
		chromedp.Click(chromedp.CSS(`[data-testid=group-save]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-vm-group="e2e-db"] a[data-members="1"]`)),
	)
	// db-01 is in e2e-db by its rule alone: the VM page says so and offers
	// no Remove (only a membership by hand can be removed).
	dbGroup := run(b, "rule group id", chromedp.AttributeValue(chromedp.CSS(`tr[data-vm-group="e2e-db"]`), "data-id")).Value
	b.visit(base, axe, "vm group by rule", "/vms/"+url.PathEscape(vcEast+":vm-2"), `[data-testid=vm-groups] li[data-group="`+dbGroup+`"][data-membership="rule"]`)
	byRule := run(b, "membership by rule", chromedp.Evaluate[struct {
		Remove bool   `json:"remove"`
		Text   string `json:"text"`
	}](`(() => { const li = document.querySelector('[data-testid=vm-groups] li[data-group="`+dbGroup+`"]');
		return {remove: !!li.querySelector('button[data-group-remove]'), text: li.innerText}; })()`))
	ruleText := readCatalog(t)["en"]["vmEdit.member.rule"]
	b.check("membership by rule", !byRule.Remove && ruleText != "" && strings.Contains(byRule.Text, ruleText),
		"db-01 in e2e-db: %+v, want %q and no Remove button", byRule, ruleText)
	b.do("delete the rule group", 30*time.Second,
		chromedp.Navigate(base+"/vm-groups"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-vm-group="e2e-db"]`)),
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(chromedp.CSS(`tr[data-vm-group="e2e-db"] button[data-group-delete]`)),
		chromedp.WaitNotPresent(chromedp.CSS(`tr[data-vm-group="e2e-db"]`)),
	)
	// Batch: dc-east's two VMs selected on the list, added to the group
	// (web-01 already is: done all the same), then labelled; the answer
	// is shown per item and the group counts both.
	b.do("batch select", 20*time.Second,
		chromedp.Navigate(base+"/vms?site=dc-east"),
		chromedp.WaitVisible(chromedp.CSS(`[data-vm] input[data-select]`)),
		chromedp.Click(chromedp.CSS(`[data-testid=select-page]`)),
		chromedp.WaitReady(chromedp.CSS(`#vb-group option[value="`+gid+`"]`)),
	)
	b.axe("vm batch", axe)
	b.do("batch add to group", 20*time.Second,
		chromedp.Evaluate[chromedp.Void](`(() => { const s = document.querySelector('#vb-group'); s.value = '`+gid+`';
			s.dispatchEvent(new Event('change', {bubbles: true})); })()`),
		chromedp.Click(chromedp.CSS(`[data-testid=vm-batch-apply]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=vm-batch] [role=status]`)),
	)
	added := run(b, "batch result", chromedp.Evaluate[string](`document.querySelector('[data-testid=vm-batch] [role=status]').innerText`))
	b.check("batch added", strings.Contains(added, "Done for 2 VMs, not done for 0"), "batch answer %q, want both VMs done", added)
	b.do("batch set labels", 20*time.Second,
		chromedp.Evaluate[chromedp.Void](`(() => { const s = document.querySelector('#vb-action'); s.value = 'set_labels';
			s.dispatchEvent(new Event('change', {bubbles: true})); })()`),
		chromedp.WaitVisible(chromedp.CSS(`#vb-labels`)),
		typeInto(`#vb-labels`, "not a label"),
		chromedp.Click(chromedp.CSS(`[data-testid=vm-batch-apply]`)),
		chromedp.WaitVisible(chromedp.CSS(`.field-error[data-field="labels"]`)),
		typeInto(`#vb-labels`, "tier=web"),
		chromedp.Click(chromedp.CSS(`[data-testid=vm-batch-apply]`)),
		chromedp.WaitNotPresent(chromedp.CSS(`.field-error[data-field="labels"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=vm-batch] [role=status]`)),
	)
	b.visit(base, axe, "vm groups after batch", "/vm-groups", `tr[data-vm-group="e2e-web"] a[data-members="2"]`)
	b.do("labels set by batch", 20*time.Second,
		chromedp.Navigate(base+vmPath),
		chromedp.WaitVisible(chromedp.CSS(`#vme-desc`)),
	)
	labels := run(b, "batch labels", chromedp.Evaluate[string](`document.querySelector('section[aria-label="Operator fields"]')?.innerText ?? ''`))
	b.check("batch labels", strings.Contains(labels, "tier=web") && !strings.Contains(labels, "env=prod"), "web-01's operator fields %q: want tier=web replacing env=prod", labels)

	// Users: e2e-ops's data scope set to dc-east and the group; a role
	// made of the vm branch of the permission tree.
	b.visit(base, axe, "users editors", "/users", `button[data-scope-edit="e2e-ops"]`, `[data-testid=role-new]`)
	b.do("scope form", 20*time.Second,
		chromedp.Click(chromedp.CSS(`button[data-scope-edit="e2e-ops"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[data-scope-site="dc-east"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[data-scope-group="`+gid+`"]`)),
	)
	b.axe("scope form", axe)
	b.do("set scope", 20*time.Second,
		chromedp.Click(chromedp.CSS(`input[data-scope-site="dc-east"]`)),
		chromedp.Click(chromedp.CSS(`input[data-scope-group="`+gid+`"]`)),
		chromedp.Click(chromedp.CSS(`[data-testid=scope-save]`)),
		chromedp.WaitNotPresent(chromedp.CSS(`[data-testid=scope-form]`)),
	)
	b.do("reload users", 20*time.Second, chromedp.Navigate(base+"/users"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-user="e2e-ops"] [data-scope="dc-east"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-user="e2e-ops"] [data-scope="e2e-web"]`)))
	scope := run(b, "scope shown", chromedp.Evaluate[string](`document.querySelector('tr[data-user="e2e-ops"]').innerText`))
	b.check("scope saved", strings.Contains(scope, "dc-east") && strings.Contains(scope, "e2e-web") && !strings.Contains(scope, "dc-west"),
		"e2e-ops's row %q: want the scope dc-east and e2e-web", scope)
	b.do("role form", 20*time.Second,
		chromedp.Click(chromedp.CSS(`[data-testid=role-new]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[data-branch="vm"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[data-permission="alert:read"]`)),
		typeInto(`#re-name`, "e2e-viewer"),
		typeInto(`#re-desc`, "sees VMs and edits them"),
		chromedp.Click(chromedp.CSS(`input[data-branch="vm"]`)),
		chromedp.Click(chromedp.CSS(`input[data-permission="alert:read"]`)),
	)
	// The vm branch is wholly chosen, the alert branch partly (mixed).
	b.do("permission tree", 10*time.Second,
		chromedp.WaitReady(chromedp.CSS(`input[data-branch="vm"]:checked`)),
		chromedp.WaitReady(chromedp.CSS(`input[data-branch="alert"]:indeterminate`)),
	)
	b.axe("role form", axe)
	// The API's field error (a name it refuses) shows beside the field.
	b.do("bad role name", 20*time.Second,
		typeInto(`#re-name`, "Bad Name"),
		chromedp.Click(chromedp.CSS(`[data-testid=role-save]`)),
		chromedp.WaitVisible(chromedp.CSS(`.field-error[data-field="name"]`)),
		typeInto(`#re-name`, "e2e-viewer"),
	)
	b.do("create role", 20*time.Second,
		chromedp.Click(chromedp.CSS(`[data-testid=role-save]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-role="e2e-viewer"]`)),
	)
	perms := run(b, "role permissions", chromedp.AttributeValue(chromedp.CSS(`tr[data-role="e2e-viewer"] td[title]`), "title"))
	b.check("role created", strings.Contains(perms.Value, "alert:read") && strings.Contains(perms.Value, "vm:read") && strings.Contains(perms.Value, "vm:write") &&
		!strings.Contains(perms.Value, "alert:write"), "the new role's permissions are %q, want alert:read, vm:read and vm:write", perms.Value)
	return []page{{"/vm-groups", `tr[data-vm-group="e2e-web"]`}}
}

// escalationRefused signs in as e2e-ra, who may edit roles but holds no
// alert permission, and has the role editor show the API's refusal of a
// role with the alert branch: the permissions it lacks, each named.
func escalationRefused(b *browser, base, axe string) {
	b.do("sign in as e2e-ra", 30*time.Second,
		chromedp.Evaluate[chromedp.Void](`sessionStorage.clear()`),
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#login-user`)),
		chromedp.SendKeys(chromedp.CSS(`#login-user`), "e2e-ra"),
		chromedp.SendKeys(chromedp.CSS(`#login-password`), adminPassword),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#login-user`)),
	)
	b.do("escalating role", 30*time.Second,
		chromedp.Navigate(base+"/users"),
		chromedp.Click(chromedp.CSS(`[data-testid=role-new]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[data-branch="alert"]`)),
		typeInto(`#re-name`, "e2e-escalate"),
		chromedp.Click(chromedp.CSS(`input[data-branch="alert"]`)),
		chromedp.Click(chromedp.CSS(`[data-testid=role-save]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=escalation] [data-missing="alert:read"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=escalation] [data-missing="alert:write"]`)),
	)
	b.axe("escalation refused", axe)
}
