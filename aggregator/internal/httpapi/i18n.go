package httpapi

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
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
	CodeGroupNotFound:  {LangEN: "No such VM group.", LangZH: "虚拟机组不存在。", LangJA: "VM グループが存在しません。"},
	CodeGroupNameTaken: {LangEN: "A VM group with this name exists.", LangZH: "同名的虚拟机组已存在。", LangJA: "この名前の VM グループは既に存在します。"},
	CodeScopeRestricted: {LangEN: "This covers every site; your data scope is limited to some.", LangZH: "此资源涵盖所有站点；您的数据范围仅限部分站点。",
		LangJA: "これはすべてのサイトを対象とします。あなたのデータ範囲は一部のサイトに限られています。"},
}

// fieldMessages holds field error messages; {name} is replaced by params.
var fieldMessages = map[string]map[string]string{
	FieldRequired:                {LangEN: "This field is required.", LangZH: "此字段为必填项。", LangJA: "この項目は必須です。"},
	FieldInvalidType:             {LangEN: "Expected a value of type {expected}.", LangZH: "应为 {expected} 类型的值。", LangJA: "{expected} 型の値が必要です。"},
	FieldUnknown:                 {LangEN: "Unknown field.", LangZH: "未知字段。", LangJA: "不明なフィールドです。"},
	FieldInvalidFormat:           {LangEN: "Invalid format: {format}.", LangZH: "格式无效：{format}。", LangJA: "形式が無効です: {format}。"},
	FieldTooLong:                 {LangEN: "At most {max} characters.", LangZH: "最多 {max} 个字符。", LangJA: "最大 {max} 文字です。"},
	FieldOutOfRange:              {LangEN: "Must be between {min} and {max}.", LangZH: "必须介于 {min} 和 {max} 之间。", LangJA: "{min} から {max} の範囲で指定してください。"},
	FieldInvalidValue:            {LangEN: "Invalid value; allowed: {allowed}.", LangZH: "值无效；允许：{allowed}。", LangJA: "値が無効です。使用可能: {allowed}。"},
	FieldUnknownRole:             {LangEN: "Unknown role {name}.", LangZH: "未知角色 {name}。", LangJA: "不明なロール {name} です。"},
	FieldUnknownPermission:       {LangEN: "Unknown permission {name}.", LangZH: "未知权限 {name}。", LangJA: "不明な権限 {name} です。"},
	FieldTaken:                   {LangEN: "Already in use.", LangZH: "已被使用。", LangJA: "既に使用されています。"},
	FieldUnknownGroup:            {LangEN: "Unknown VM group {name}.", LangZH: "未知虚拟机组 {name}。", LangJA: "不明な VM グループ {name} です。"},
	FieldWrongPassword:           {LangEN: "Wrong password.", LangZH: "密码错误。", LangJA: "パスワードが正しくありません。"},
	FieldCycle:                   {LangEN: "Inheritance would form a cycle.", LangZH: "继承关系将形成循环。", LangJA: "継承が循環します。"},
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
