package httpapi

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/vmpulse/vmpulse/aggregator/internal/backup"
)

// Languages the API answers in. English is the default.
const (
	LangEN = "en"
	LangZH = "zh-CN"
	LangJA = "ja-JP"
)

// Languages lists the supported languages.
var Languages = []string{LangEN, LangZH, LangJA}

// messages holds every top-level message by code, then language.
var messages = map[string]map[string]string{
	"OK":                   {LangEN: "ok", LangZH: "成功", LangJA: "成功"},
	CodeBadRequest:         {LangEN: "The request is invalid.", LangZH: "请求无效。", LangJA: "リクエストが無効です。"},
	CodeInvalidJSON:        {LangEN: "The request body is not valid JSON.", LangZH: "请求体不是有效的 JSON。", LangJA: "リクエスト本文が有効な JSON ではありません。"},
	CodeValidation:         {LangEN: "Some fields are invalid.", LangZH: "部分字段无效。", LangJA: "一部のフィールドが無効です。"},
	CodeUnsupportedMedia:   {LangEN: "The request body must be application/json.", LangZH: "请求体必须是 application/json。", LangJA: "リクエスト本文は application/json である必要があります。"},
	CodeTooLarge:           {LangEN: "The request body is too large.", LangZH: "请求体过大。", LangJA: "リクエスト本文が大きすぎます。"},
	CodeNotFound:           {LangEN: "No such resource.", LangZH: "资源不存在。", LangJA: "リソースが存在しません。"},
	CodeMethodNotAllowed:   {LangEN: "This method is not allowed here.", LangZH: "不允许使用此方法。", LangJA: "このメソッドは使用できません。"},
	CodeConflict:           {LangEN: "This conflicts with an existing resource.", LangZH: "与已有资源冲突。", LangJA: "既存のリソースと競合しています。"},
	CodeInternal:           {LangEN: "Internal error; quote the request id when reporting it.", LangZH: "内部错误；报告时请提供请求 ID。", LangJA: "内部エラーです。報告の際はリクエスト ID をお知らせください。"},
	CodeTimeout:            {LangEN: "The request took too long.", LangZH: "请求超时。", LangJA: "リクエストがタイムアウトしました。"},
	CodeUnavailable:        {LangEN: "The service is not ready.", LangZH: "服务尚未就绪。", LangJA: "サービスの準備ができていません。"},
	CodeInvalidCredentials: {LangEN: "Invalid username or password, or the account is locked.", LangZH: "用户名或密码错误，或账户已被锁定。", LangJA: "ユーザー名またはパスワードが正しくないか、アカウントがロックされています。"},
	CodeRateLimited:        {LangEN: "Too many login attempts; try again later.", LangZH: "登录尝试过多，请稍后再试。", LangJA: "ログイン試行が多すぎます。しばらくしてから再試行してください。"},
	CodeUnauthenticated:    {LangEN: "Authentication is required or the token is invalid or expired.", LangZH: "需要认证，或令牌无效或已过期。", LangJA: "認証が必要です。またはトークンが無効か期限切れです。"},
	CodeRefreshInvalid:     {LangEN: "The refresh token is invalid or expired.", LangZH: "刷新令牌无效或已过期。", LangJA: "リフレッシュトークンが無効か期限切れです。"},
	CodeRefreshReused:      {LangEN: "The refresh token was already used; the session has been ended for safety.", LangZH: "刷新令牌已被使用；为安全起见会话已终止。", LangJA: "リフレッシュトークンは使用済みです。安全のためセッションを終了しました。"},
	CodeForbidden:          {LangEN: "You do not have permission to do this.", LangZH: "您没有执行此操作的权限。", LangJA: "この操作を行う権限がありません。"},
	CodeSessionRequired:    {LangEN: "This needs an interactive session, not an API token.", LangZH: "此操作需要交互式会话，不能使用 API 令牌。", LangJA: "この操作には API トークンではなく対話型セッションが必要です。"},
	CodeWrongPassword:      {LangEN: "The current password is wrong.", LangZH: "当前密码错误。", LangJA: "現在のパスワードが正しくありません。"},
	CodeUserNotFound:       {LangEN: "No such user.", LangZH: "用户不存在。", LangJA: "ユーザーが存在しません。"},
	CodeRoleNotFound:       {LangEN: "No such role.", LangZH: "角色不存在。", LangJA: "ロールが存在しません。"},
	CodeSessionNotFound:    {LangEN: "No such active session.", LangZH: "会话不存在或已结束。", LangJA: "有効なセッションが存在しません。"},
	CodeTokenNotFound:      {LangEN: "No such active API token.", LangZH: "API 令牌不存在或已吊销。", LangJA: "有効な API トークンが存在しません。"},
	CodeAuditNotFound:      {LangEN: "No such audit record.", LangZH: "审计记录不存在。", LangJA: "監査レコードが存在しません。"},
	CodeAgentNotFound:      {LangEN: "No such agent.", LangZH: "采集代理不存在。", LangJA: "エージェントが存在しません。"},
	CodeVMNotFound:         {LangEN: "No such virtual machine.", LangZH: "虚拟机不存在。", LangJA: "仮想マシンが存在しません。"},
	CodeHostNotFound:       {LangEN: "No such host.", LangZH: "主机不存在。", LangJA: "ホストが存在しません。"},
	CodeClusterNotFound:    {LangEN: "No such cluster.", LangZH: "集群不存在。", LangJA: "クラスタが存在しません。"},
	CodeDatastoreNotFound:  {LangEN: "No such datastore.", LangZH: "数据存储不存在。", LangJA: "データストアが存在しません。"},
	CodeSiteNotFound:       {LangEN: "No such site.", LangZH: "站点不存在。", LangJA: "サイトが存在しません。"},
	CodeSiteNoAgent:        {LangEN: "No agent of this site is connected to this aggregator.", LangZH: "此站点没有采集代理连接到本聚合器。", LangJA: "このサイトのエージェントはこのアグリゲーターに接続していません。"},
	CodeRoleBuiltin:        {LangEN: "Built-in roles cannot be changed or deleted.", LangZH: "内置角色不能修改或删除。", LangJA: "組み込みロールは変更または削除できません。"},
	CodeRoleCycle:          {LangEN: "A role cannot inherit from itself.", LangZH: "角色不能继承自身。", LangJA: "ロールは自分自身を継承できません。"},
	CodeLastAdmin:          {LangEN: "This would leave no administrator.", LangZH: "此操作将导致没有管理员。", LangJA: "この操作を行うと管理者がいなくなります。"},
	CodeSelfOperation:      {LangEN: "You cannot do this to your own account.", LangZH: "不能对自己的账户执行此操作。", LangJA: "自分のアカウントにはこの操作を行えません。"},
	CodeEscalation: {LangEN: "You cannot grant permissions, roles or data scope you do not hold, or act on a user or role that holds more than you.",
		LangZH: "不能授予自己未拥有的权限、角色或数据范围，也不能操作权限多于自己的用户或角色。",
		LangJA: "自分が持たない権限・ロール・データ範囲は付与できず、自分より多くを持つユーザーやロールは操作できません。"},
	CodeSelfModification: {LangEN: "You cannot change your own roles or data scope.", LangZH: "不能修改自己的角色或数据范围。", LangJA: "自分のロールやデータ範囲は変更できません。"},
	CodeVMLive: {LangEN: "This VM is still in vCenter's inventory; only a VM vCenter no longer has can be forgotten.",
		LangZH: "该虚拟机仍在 vCenter 清单中；只能移除 vCenter 中已不存在的虚拟机。", LangJA: "この仮想マシンはまだ vCenter のインベントリにあります。vCenter にない仮想マシンのみ削除できます。"},
	CodeGroupNotFound: {LangEN: "No such VM group.", LangZH: "虚拟机组不存在。", LangJA: "VM グループが存在しません。"},
	CodeGroupInScope: {LangEN: "This VM group is a user's data scope; take it out of every scope first.",
		LangZH: "该虚拟机组是某个用户的数据范围；请先将其从所有数据范围中移除。", LangJA: "この VM グループはユーザーのデータ範囲です。先にすべてのデータ範囲から外してください。"},
	CodeGroupNameTaken: {LangEN: "A VM group with this name exists.", LangZH: "同名的虚拟机组已存在。", LangJA: "この名前の VM グループは既に存在します。"},
	CodeScopeRestricted: {LangEN: "This covers every site; your data scope is limited to some.", LangZH: "此资源涵盖所有站点；您的数据范围仅限部分站点。",
		LangJA: "これはすべてのサイトを対象とします。あなたのデータ範囲は一部のサイトに限られています。"},
	CodeUpgradeRequired: {LangEN: "This is a WebSocket endpoint; open it with a WebSocket upgrade request.", LangZH: "这是 WebSocket 端点；请使用 WebSocket 升级请求连接。",
		LangJA: "これは WebSocket エンドポイントです。WebSocket のアップグレード要求で接続してください。"},
	CodeSlowConsumer: {LangEN: "You fell too far behind the live feed and were disconnected; reconnect.", LangZH: "您落后实时数据流过多，连接已断开；请重新连接。",
		LangJA: "ライブフィードから大きく遅れたため切断されました。再接続してください。"},
	CodeTooManySubscriptions: {LangEN: "Too many subscriptions on this connection.", LangZH: "此连接的订阅过多。", LangJA: "この接続のサブスクリプションが多すぎます。"},
	CodeHeartbeatTimeout:     {LangEN: "The client stopped answering pings.", LangZH: "客户端未响应心跳。", LangJA: "クライアントが ping に応答しなくなりました。"},
	CodeGoingAway:            {LangEN: "The server is shutting down; reconnect.", LangZH: "服务器正在关闭；请重新连接。", LangJA: "サーバーを停止しています。再接続してください。"},
	CodeResumeGap: {LangEN: "Some samples since your last event are no longer available here; they were missed.", LangZH: "自您上次收到的事件以来的部分样本在此已不可用，已丢失。",
		LangJA: "最後のイベント以降の一部のサンプルはここでは利用できなくなり、欠落しました。"},
	CodeMaintenance: {LangEN: "A restore is running; the service is in maintenance mode. Follow it at /api/v1/backups/restore and retry afterwards.",
		LangZH: "正在恢复备份，服务处于维护模式。请在 /api/v1/backups/restore 查看进度，完成后重试。",
		LangJA: "バックアップを復元中のため、サービスはメンテナンスモードです。/api/v1/backups/restore で進捗を確認し、完了後に再試行してください。"},
	CodeJobNotFound:     {LangEN: "No such job.", LangZH: "任务不存在。", LangJA: "ジョブが存在しません。"},
	CodeAlertNotFound:   {LangEN: "No such alert.", LangZH: "告警不存在。", LangJA: "アラートが存在しません。"},
	CodeAlertNotActive:  {LangEN: "This alert is already resolved.", LangZH: "该告警已解决。", LangJA: "このアラートは既に解決済みです。"},
	CodeRuleNotFound:    {LangEN: "No such alert rule.", LangZH: "告警规则不存在。", LangJA: "アラートルールが存在しません。"},
	CodeRuleNameTaken:   {LangEN: "An alert rule with this name exists.", LangZH: "同名的告警规则已存在。", LangJA: "この名前のアラートルールは既に存在します。"},
	CodeSilenceNotFound: {LangEN: "No such silence.", LangZH: "静默规则不存在。", LangJA: "サイレンスが存在しません。"},
	CodeWindowNotFound:  {LangEN: "No such maintenance window.", LangZH: "维护窗口不存在。", LangJA: "メンテナンスウィンドウが存在しません。"},
	CodeChannelNotFound: {LangEN: "No such notification channel.", LangZH: "通知渠道不存在。", LangJA: "通知チャネルが存在しません。"},
	CodeChannelNameTaken: {LangEN: "A notification channel with this name exists.", LangZH: "同名的通知渠道已存在。",
		LangJA: "この名前の通知チャネルは既に存在します。"},
	CodeChannelInUse: {LangEN: "Alert rules still send to this channel; remove it from them first.", LangZH: "仍有告警规则使用此通知渠道；请先从规则中移除。",
		LangJA: "このチャネルはまだアラートルールで使用されています。先にルールから外してください。"},
	CodeNotifierUnavailable: {LangEN: "No notifier plugins are available on this aggregator.", LangZH: "本聚合器上没有可用的通知插件。",
		LangJA: "このアグリゲーターでは通知プラグインを利用できません。"},
	backup.CodeNotFound:    {LangEN: "No such backup.", LangZH: "备份不存在。", LangJA: "バックアップが存在しません。"},
	backup.CodeBusy:        {LangEN: "Another backup or restore is running.", LangZH: "另一个备份或恢复正在进行。", LangJA: "別のバックアップまたは復元が実行中です。"},
	backup.CodeNotReady:    {LangEN: "This backup has not finished successfully.", LangZH: "该备份尚未成功完成。", LangJA: "このバックアップは正常に完了していません。"},
	backup.CodeInvalid:     {LangEN: "The backup request is invalid.", LangZH: "备份请求无效。", LangJA: "バックアップの要求が無効です。"},
	backup.CodeToolMissing: {LangEN: "pg_dump or pg_restore cannot be found or run on this aggregator.", LangZH: "本聚合器上找不到或无法运行 pg_dump 或 pg_restore。", LangJA: "このアグリゲーターで pg_dump または pg_restore が見つからないか実行できません。"},
	backup.CodeDiskFull:    {LangEN: "There is no space left for the backup or the restore.", LangZH: "磁盘空间不足，无法完成备份或恢复。", LangJA: "バックアップまたは復元のための空き容量がありません。"},
	backup.CodeChecksum: {LangEN: "The backup file is corrupted or truncated (its checksum does not match); nothing was changed.",
		LangZH: "备份文件已损坏或被截断（校验和不匹配）；未做任何更改。", LangJA: "バックアップファイルが破損しているか切り詰められています（チェックサム不一致）。何も変更していません。"},
	backup.CodeFileMissing: {LangEN: "The backup's file is missing from the backup directory.", LangZH: "备份目录中缺少该备份的文件。", LangJA: "バックアップディレクトリにバックアップのファイルがありません。"},
	backup.CodeSchemaNewer: {LangEN: "This backup comes from a newer vmpulse version; upgrade the aggregator before restoring it.",
		LangZH: "此备份来自更新版本的 vmpulse；请先升级聚合器再恢复。", LangJA: "このバックアップは新しいバージョンの vmpulse のものです。復元する前にアグリゲーターを更新してください。"},
	backup.CodePauseTimeout: {LangEN: "Not every aggregator replica paused ingest in time; the restore was not started.",
		LangZH: "并非所有聚合器副本都及时暂停了数据接收；未开始恢复。", LangJA: "すべてのアグリゲーターのレプリカが時間内に取り込みを停止しなかったため、復元を開始しませんでした。"},
	backup.CodeFailed:        {LangEN: "The backup failed.", LangZH: "备份失败。", LangJA: "バックアップに失敗しました。"},
	backup.CodeRestoreFailed: {LangEN: "The restore failed and was rolled back; nothing was changed.", LangZH: "恢复失败并已回滚；未做任何更改。", LangJA: "復元に失敗したためロールバックしました。何も変更していません。"},
}

// fieldMessages holds field error messages; {name} is replaced by params.
var fieldMessages = map[string]map[string]string{
	FieldRequired:          {LangEN: "This field is required.", LangZH: "此字段为必填项。", LangJA: "この項目は必須です。"},
	FieldInvalidType:       {LangEN: "Expected a value of type {expected}.", LangZH: "应为 {expected} 类型的值。", LangJA: "{expected} 型の値が必要です。"},
	FieldUnknown:           {LangEN: "Unknown field.", LangZH: "未知字段。", LangJA: "不明なフィールドです。"},
	FieldInvalidFormat:     {LangEN: "Invalid format: {format}.", LangZH: "格式无效：{format}。", LangJA: "形式が無効です: {format}。"},
	FieldTooLong:           {LangEN: "At most {max} characters.", LangZH: "最多 {max} 个字符。", LangJA: "最大 {max} 文字です。"},
	FieldOutOfRange:        {LangEN: "Must be between {min} and {max}.", LangZH: "必须介于 {min} 和 {max} 之间。", LangJA: "{min} から {max} の範囲で指定してください。"},
	FieldInvalidValue:      {LangEN: "Invalid value; allowed: {allowed}.", LangZH: "值无效；允许：{allowed}。", LangJA: "値が無効です。使用可能: {allowed}。"},
	FieldUnknownRole:       {LangEN: "Unknown role {name}.", LangZH: "未知角色 {name}。", LangJA: "不明なロール {name} です。"},
	FieldUnknownPermission: {LangEN: "Unknown permission {name}.", LangZH: "未知权限 {name}。", LangJA: "不明な権限 {name} です。"},
	FieldTaken:             {LangEN: "Already in use.", LangZH: "已被使用。", LangJA: "既に使用されています。"},
	FieldLabelRuleScope: {LangEN: "VM group {name} selects by labels, which vm:write can change: it cannot be a data scope.",
		LangZH: "虚拟机组 {name} 按标签选择成员，而标签可由 vm:write 修改：不能用作数据范围。",
		LangJA: "VM グループ {name} はラベルでメンバーを選びます。ラベルは vm:write で変更できるため、データ範囲にはできません。"},
	FieldUnknownGroup:            {LangEN: "Unknown VM group {name}.", LangZH: "未知虚拟机组 {name}。", LangJA: "不明な VM グループ {name} です。"},
	FieldWrongPassword:           {LangEN: "Wrong password.", LangZH: "密码错误。", LangJA: "パスワードが正しくありません。"},
	FieldCycle:                   {LangEN: "Inheritance would form a cycle.", LangZH: "继承关系将形成循环。", LangJA: "継承が循環します。"},
	FieldUnknownChannel:          {LangEN: "Unknown notification channel {name}.", LangZH: "未知通知渠道 {name}。", LangJA: "不明な通知チャネル {name} です。"},
	FieldInvalidText:             {LangEN: "Must be UTF-8 text without NUL characters or unpaired surrogates.", LangZH: "必须是不含 NUL 字符或不成对代理项的 UTF-8 文本。", LangJA: "NUL 文字や対になっていないサロゲートを含まない UTF-8 テキストである必要があります。"},
	"password_too_short":         {LangEN: "At least {min} characters.", LangZH: "至少 {min} 个字符。", LangJA: "{min} 文字以上必要です。"},
	"password_too_long":          {LangEN: "At most {max} characters.", LangZH: "最多 {max} 个字符。", LangJA: "最大 {max} 文字です。"},
	"password_char_classes":      {LangEN: "Use at least three of: lower case, upper case, digits, symbols.", LangZH: "至少包含小写字母、大写字母、数字、符号中的三类。", LangJA: "小文字、大文字、数字、記号のうち 3 種類以上を使用してください。"},
	"password_contains_username": {LangEN: "Must not contain the username or email name.", LangZH: "不能包含用户名或邮箱名。", LangJA: "ユーザー名やメール名を含めないでください。"},
	"password_same_as_current":   {LangEN: "Must differ from the current password.", LangZH: "不能与当前密码相同。", LangJA: "現在のパスワードと異なる必要があります。"},
	"password_control_character": {LangEN: "Must not contain control characters.", LangZH: "不能包含控制字符。", LangJA: "制御文字を含めないでください。"},
}

func message(lang, code string) string {
	m, ok := messages[code]
	if !ok {
		return code
	}
	if s, ok := m[lang]; ok {
		return s
	}
	return m[LangEN]
}

func fieldMessage(lang, code string, params map[string]any) string {
	m, ok := fieldMessages[code]
	if !ok {
		return code
	}
	s, ok := m[lang]
	if !ok {
		s = m[LangEN]
	}
	for k, v := range params {
		s = strings.ReplaceAll(s, "{"+k+"}", fmt.Sprint(v))
	}
	return s
}

// negotiateLang picks the supported language the Accept-Language header
// prefers most (by q-value, then order); English when none matches.
func negotiateLang(header string) string {
	type choice struct {
		lang string
		q    float64
		i    int
	}
	var cs []choice
	for i, part := range strings.Split(header, ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				continue
			}
			q = f
		}
		if q <= 0 {
			continue
		}
		tag = strings.ToLower(strings.TrimSpace(tag))
		var lang string
		switch {
		case tag == "zh" || strings.HasPrefix(tag, "zh-"):
			lang = LangZH
		case tag == "ja" || strings.HasPrefix(tag, "ja-"):
			lang = LangJA
		case tag == "en" || strings.HasPrefix(tag, "en-"):
			lang = LangEN
		default:
			continue
		}
		cs = append(cs, choice{lang, q, i})
	}
	if len(cs) == 0 {
		return LangEN
	}
	sort.SliceStable(cs, func(a, b int) bool { return cs[a].q > cs[b].q })
	return cs[0].lang
}

func langOf(r *http.Request) string {
	if st := stateOf(r); st.lang != "" {
		return st.lang
	}
	return negotiateLang(r.Header.Get("Accept-Language"))
}
