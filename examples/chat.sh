#!/usr/bin/env bash
# Ask the lab's gateway with curl: the model list, one answer, the same streamed (server-sent
# events), and which machine served it (the x-litellm-model-id header: <model>@<machine>).
#   LABCTL_GATEWAY=http://orpheus.home.arpa:4000/v1 LABCTL_KEY=sk-... ./examples/chat.sh
set -euo pipefail
gateway=${LABCTL_GATEWAY:-http://orpheus.home.arpa:4000/v1}
model=${LABCTL_MODEL:-llama3.1:8b}
auth="Authorization: Bearer ${LABCTL_KEY:?set LABCTL_KEY to your key}"

curl -fsS "$gateway/models" -H "$auth"
echo
curl -fsS -D - "$gateway/chat/completions" -H "$auth" -H 'Content-Type: application/json' \
  -d "{\"model\": \"$model\", \"max_tokens\": 64, \"messages\": [{\"role\": \"user\", \"content\": \"Say hello to the lab.\"}]}" \
  | grep -iE '^x-litellm-model-id|^\{'
curl -fsSN "$gateway/chat/completions" -H "$auth" -H 'Content-Type: application/json' \
  -d "{\"model\": \"$model\", \"max_tokens\": 64, \"stream\": true, \"messages\": [{\"role\": \"user\", \"content\": \"Count to five.\"}]}"
