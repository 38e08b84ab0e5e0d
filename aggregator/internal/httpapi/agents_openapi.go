package httpapi

// agentPluginSchema describes AgentPlugin.
func agentPluginSchema() map[string]any {
	return objectSchema(map[string]any{
		"name":    desc(str, "the plugin's name in the agent's config"),
		"version": desc(str, "as the plugin reports it; empty until it has started"),
		"state": map[string]any{"type": "string", "enum": []string{"starting", "running", "restarting", "refused", "stopped", "missing"},
			"description": "refused: checksum or protocol mismatch, final until the agent's config changes; missing: no such binary"},
		"restarts":      desc(integer, "restarts after crashes, failed health checks or hangs since the agent started"),
		"last_error":    desc(str, "the latest error, empty if none"),
		"last_error_at": nullable(dateTime, "null without an error"),
		"last_collect":  nullable(dateTime, "end of the latest successful collection; null before the first"),
		"collects":      desc(integer, "successful collections since the agent started"),
		"failures":      desc(integer, "failed calls (error, timeout, plugin down) since the agent started"),
		"samples":       desc(integer, "samples spooled since the agent started"),
	})
}

// agentVCenterSchema describes AgentVCenter.
func agentVCenterSchema() map[string]any {
	return objectSchema(map[string]any{
		"source":     desc(str, "the endpoint as in the samples' series keys (its instance UUID or configured name)"),
		"reachable":  desc(boolean, "whether the agent's last call to it succeeded"),
		"since":      nullable(dateTime, "when reachable last changed; null if not reported"),
		"last_ok":    nullable(dateTime, "the last successful call; null before the first"),
		"last_error": desc(str, "the latest error, empty if none"),
	})
}
