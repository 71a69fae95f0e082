#!/usr/bin/env bash
# Check, and with --apply set, the operating-system settings that matter for
# transcription-server under load. Without --apply it is a dry run: it prints
# each setting, its current value, the recommended one, and what it would do.
#
#   tuning/os-settings.sh            # dry run (default)
#   tuning/os-settings.sh --apply    # as root: write the sysctls (not persisted)
#
# Persist what you keep in /etc/sysctl.d/90-transcription.conf, and set the
# open-file limit in the service manager (systemd: LimitNOFILE=).
set -euo pipefail

apply=false
case "${1:-}" in
  --apply) apply=true ;;
  ""|--dry-run) ;;
  *) echo "usage: $0 [--dry-run|--apply]" >&2; exit 2 ;;
esac

changes=0
# name  recommended  comparison(min|exact)  why
settings=(
  "net.core.somaxconn 4096 min listen backlog per core: bursts of new connections and WebSocket upgrades"
  "net.ipv4.tcp_max_syn_backlog 8192 min half-open connections queued during bursts"
  "net.core.netdev_max_backlog 16384 min packets queued per CPU before the stack drops them"
  "fs.file-max 1048576 min system-wide descriptors: every session is one"
  "net.ipv4.ip_local_port_range 1024_65000 range ports a load generator (or a proxy in front) can use"
  "net.ipv4.tcp_tw_reuse 1 exact reuse TIME_WAIT ports for new outgoing connections (load generators, proxies)"
  "kernel.io_uring_disabled 0 exact 0 lets every process use io_uring (else the server falls back to epoll)"
)

for entry in "${settings[@]}"; do
  read -r name recommended mode why <<<"$entry"
  recommended=${recommended//_/ }
  path=/proc/sys/${name//.//}
  if [[ ! -e $path ]]; then
    printf '%-32s %-14s (not on this kernel)\n' "$name" "-"
    continue
  fi
  current=$(tr -s '\t ' ' ' <"$path")
  ok=true
  case $mode in
    min) [[ ${current%% *} -ge ${recommended%% *} ]] || ok=false ;;
    exact) [[ $current == "$recommended" ]] || ok=false ;;
    range) [[ ${current%% *} -le ${recommended%% *} && ${current##* } -ge ${recommended##* } ]] || ok=false ;;
  esac
  if $ok; then
    printf '%-32s %-14s ok (%s)\n' "$name" "$current" "$why"
  else
    changes=$((changes + 1))
    if $apply; then
      sysctl -q -w "$name=$recommended"
      printf '%-32s %-14s -> %s (applied: %s)\n' "$name" "$current" "$recommended" "$why"
    else
      printf '%-32s %-14s -> %s (would set: %s)\n' "$name" "$current" "$recommended" "$why"
    fi
  fi
done

soft=$(ulimit -Sn); hard=$(ulimit -Hn)
printf '%-32s %-14s ' "nofile (this shell)" "$soft/$hard"
if [[ $hard != unlimited && $hard -lt 65536 ]]; then
  echo "-> raise the hard limit to >= 65536 (systemd LimitNOFILE=65536; /etc/security/limits.conf)"
  changes=$((changes + 1))
else
  echo "ok (the server raises its soft limit to the hard limit itself)"
fi

governor=/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor
if [[ -r $governor ]]; then
  printf '%-32s %-14s %s\n' "cpu frequency governor" "$(cat $governor)" "(performance is steadiest for latency)"
fi

if $apply; then
  echo "$changes setting(s) changed (not persisted across reboots)."
else
  echo "$changes setting(s) differ; run with --apply as root to set the sysctls."
fi
