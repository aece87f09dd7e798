# Shared by the .deb postinst and the .rpm %post (pasted in at build time). The sysusers.d file
# is the one declaration of the user (systemd re-creates it from there on image-based systems);
# useradd (Debian: passwd, priority required; RHEL: shadow-utils) covers hosts without
# systemd-sysusers, such as containers. The user is created in the post-install step because
# the package owns no file that belongs to it: systemd creates /var/lib/edgecheck at first start.
edgecheck_create_user() {
    sysusers_conf="$1"
    if getent passwd edgecheck >/dev/null 2>&1; then
        return 0
    fi
    if command -v systemd-sysusers >/dev/null 2>&1 && [ -f "$sysusers_conf" ]; then
        systemd-sysusers "$sysusers_conf" && return 0
    fi
    nologin=/usr/sbin/nologin
    [ -x "$nologin" ] || nologin=/sbin/nologin
    getent group edgecheck >/dev/null 2>&1 || groupadd --system edgecheck
    useradd --system --gid edgecheck --home-dir /var/lib/edgecheck --no-create-home \
        --shell "$nologin" --comment "edgecheck fleet agent" edgecheck
}
