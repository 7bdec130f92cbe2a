#!/usr/bin/env bash
# `make up` / `make down`: say what is missing before Compose does (an old docker prints only
# "unknown shorthand flag: 'd' in -d"). COMPOSE is the compose command (default `docker compose`).
set -uo pipefail

compose=${COMPOSE:-docker compose}
read -r -a cmd <<<"$compose"
need="make up needs Docker Engine with Compose v2 (the \`docker compose\` plugin)"

if ! command -v "${cmd[0]}" >/dev/null 2>&1; then
  echo "$need: \`${cmd[0]}\` was not found. Install Docker Engine and its compose plugin" \
       "(https://docs.docker.com/engine/install/), or set COMPOSE to a Compose v2 command." >&2
  exit 1
fi
if ! version=$("${cmd[@]}" version --short 2>/dev/null) || [[ -z "$version" ]]; then
  echo "$need: \`$compose version\` failed: this docker has no compose plugin. Install it (Debian/Ubuntu:" \
       "apt-get install docker-compose-plugin), or set COMPOSE to a Compose v2 command." >&2
  exit 1
fi
if [[ ! "${version#v}" =~ ^2\. ]]; then
  echo "$need: \`$compose\` is Compose $version. Install the compose plugin (v2), or set COMPOSE to a Compose v2" \
       "command." >&2
  exit 1
fi
if [[ "${cmd[0]}" == docker ]] && ! docker info >/dev/null 2>&1; then
  echo "make up: the Docker engine does not answer (\`docker info\` failed): start it, or check that you may use" \
       "its socket (the docker group)." >&2
  exit 1
fi
