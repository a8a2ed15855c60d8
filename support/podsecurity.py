"""The Pod Security Standards' "restricted" profile (baseline included), as a check of a
pod spec: what the API server's Pod Security admission would refuse in a namespace
labelled `pod-security.kubernetes.io/enforce: restricted`.

Written from the standard (kubernetes.io/docs/concepts/security/pod-security-standards),
for the fields the chart can set; Windows-only and sysctl rules are covered by refusing
any `windowsOptions.hostProcess` and any sysctl outside the safe set.
"""

from __future__ import annotations

from typing import Any

BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})
RESTRICTED_VOLUMES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
})
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
})
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t",
                           "container_engine_t"})


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Every rule of the restricted profile that the pod spec `pod` breaks."""
    found: list[str] = []
    pod_sc = pod.get("securityContext") or {}
    containers = [*pod.get("initContainers", ()), *pod.get("containers", ()),
                  *pod.get("ephemeralContainers", ())]
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            found.append(f"{field}: true")
    for volume in pod.get("volumes", ()):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']}: type {', '.join(sorted(kinds))}")
    for sysctl in pod_sc.get("sysctls", ()):
        if sysctl["name"] not in SAFE_SYSCTLS:
            found.append(f"sysctl {sysctl['name']}")
    found += _context_violations("pod", pod_sc)
    for container in containers:
        name = f"container {container['name']}"
        sc = container.get("securityContext") or {}
        found += _context_violations(name, sc)
        if sc.get("privileged"):
            found.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        if sc.get("procMount", "Default") != "Default":
            found.append(f"{name}: procMount {sc['procMount']}")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in capabilities.get("drop", ()):
            found.append(f"{name}: capabilities do not drop ALL")
        added = set(capabilities.get("add", ()))
        if added - {"NET_BIND_SERVICE"}:
            beyond = "" if added <= BASELINE_CAPABILITIES else " (beyond baseline)"
            found.append(f"{name}: adds capabilities {sorted(added)}{beyond}")
        for port in container.get("ports", ()):
            if port.get("hostPort"):
                found.append(f"{name}: hostPort {port['hostPort']}")
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            found.append(f"{name}: runAsNonRoot is not true")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile {seccomp or 'unset'}")
    return found


def _context_violations(where: str, sc: dict[str, Any]) -> list[str]:
    """The rules that apply alike to a pod's and a container's securityContext."""
    found = []
    if sc.get("runAsUser") == 0:
        found.append(f"{where}: runAsUser 0")
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        found.append(f"{where}: windowsOptions.hostProcess")
    if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
        found.append(f"{where}: seccompProfile Unconfined")
    apparmor = (sc.get("appArmorProfile") or {}).get("type")
    if apparmor not in (None, "RuntimeDefault", "Localhost"):
        found.append(f"{where}: appArmorProfile {apparmor}")
    selinux = sc.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or \
            selinux.get("role"):
        found.append(f"{where}: seLinuxOptions {selinux}")
    return found
