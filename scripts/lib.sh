# Shared by the setup scripts (source it): installs Debian packages only when missing.
export DEBIAN_FRONTEND=noninteractive

apt_install() {  # apt_install <package>...: install only what is missing
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}
