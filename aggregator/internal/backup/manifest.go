package backup

import (
	"time"
)

// Kinds of backup.
const (
	// KindConfig is the configuration: users, roles, API tokens, VM groups
	// and user fields, settings, alert rules and channels (once they
	// exist), the operation log and the login log.
	KindConfig = "config"
	// KindMetrics is the configuration plus the metrics of a time range
	// (whole UTC days): series definitions, raw samples and the rollups.
	KindMetrics = "metrics"
)

// ConfigTables are the tables of a configuration backup, parents before
// children. Tables that do not exist (yet) are skipped. A table listed here
// must have a primary key, and every foreign key pointing at it from a
// table not listed must be ON DELETE CASCADE (sessions → users: a restore
// ends the sessions of users it removes), or the restore refuses.
var ConfigTables = []string{
	"roles", "role_permissions", "role_parents",
	"users", "user_roles", "api_tokens",
	"vm_groups", "vm_group_members", "vm_user_fields",
	"settings",
	"alert_rules", "notification_channels", "alert_silences",
	"audit_chain", "audit_log", "login_log",
}

// logModes are the tables of ConfigTables that are evidence rather than
// state, and are never rewound by a restore (see ModeChain, ModeAppend);
// every other configuration table restores with ModeSync.
var logModes = map[string]string{"audit_log": ModeChain, "audit_chain": ModeChain, "login_log": ModeAppend}

// Restore modes of a table in a dump.
const (
	// ModeSync makes the table equal to the dump: rows missing from the
	// dump are deleted, the others inserted or updated (by primary key).
	ModeSync = "sync"
	// ModeMerge inserts the dump's rows that are missing (series: ids are
	// never reused, so what exists is what the dump has).
	ModeMerge = "merge"
	// ModePartition replaces a whole daily partition of the raw samples.
	ModePartition = "partition"
	// ModeRange replaces the rows of Target in [From, To).
	ModeRange = "range"
	// ModeChain is the hash-chained operation log (audit_log and its head,
	// audit_chain). It is not rewound: when the database's log already
	// holds every record of the dump, it is left as it is (the records
	// made since the backup, the restore's own included, stay). Only when
	// it lacks some (a new database, a log that diverged) is it set to
	// the dump's, and the records it had that the dump lacks are appended
	// again after them (new sequence numbers, same content, marked), so
	// the chain verifies and nothing is lost.
	ModeChain = "chain"
	// ModeAppend adds the dump's rows the table lacks and deletes nothing
	// (the login log): ids are kept where free, else new ones given.
	ModeAppend = "append"
)

// ManifestFormat is the version of the manifest's layout.
const ManifestFormat = 1

// Manifest describes a dump. It travels inside the dump (the manifest
// table of the backup's staging schema), so a dump file explains itself:
// what it holds, from which schema version, and how each table restores.
type Manifest struct {
	Format        int        `json:"format"`
	BackupID      string     `json:"backup_id"`
	Kind          string     `json:"kind"`
	CreatedAt     time.Time  `json:"created_at"`
	SchemaVersion int        `json:"schema_version"`
	Timescale     bool       `json:"timescaledb"`
	From          *time.Time `json:"from,omitempty"`
	To            *time.Time `json:"to,omitempty"`
	Tables        []Table    `json:"tables"`
}

// Table is one table of a dump.
type Table struct {
	// Name is the table as dumped, schema-qualified ("public.users",
	// "vmpulse_backup_1a2b3c4d.samples_5m").
	Name string `json:"name"`
	// Target is the table it restores into ("public.samples_5m").
	Target string `json:"target"`
	Mode   string `json:"mode"`
	// From and To bound a partition or a range.
	From *time.Time `json:"from,omitempty"`
	To   *time.Time `json:"to,omitempty"`
}
