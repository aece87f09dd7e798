"""Fake joined-node file trees, shaped as openyurtio/openyurt (fbefb6b) writes them.

- yurthub.yaml: pkg/yurtadm/constants/constants.go YurthubTemplate as yurtadm join renders it
  (pkg/yurtadm/util/yurthub/yurthub.go AddYurthubStaticYaml) into /etc/kubernetes/manifests.
- bootstrap-hub.conf: kubeconfigutil.CreateWithToken (server, CA data, token user) written by
  SetHubBootstrapConfig; yurthub.conf: token.go createHubConfig (client cert/key file user).
- kubelet.conf on a yurtadm-joined edge node: constants.go KubeletConfForNode (YurtHub's proxy).
- systemd: constants.go YurtHubServiceContent + YurtHubUnitConfig (10-yurthub.conf), as
  node-servant convert installs it with --bootstrap-mode=kubeletcertificate; kubelet then uses
  /var/lib/openyurt/kubelet.conf and /etc/kubernetes/kubelet.conf keeps the real server.
"""

from __future__ import annotations

import textwrap

from tests.cluster_inputs.fixtures import CLIENT_KEY_DATA, TOKEN, b64, write

SERVER = "https://47.96.0.10:6443"
SERVER2 = "https://47.96.0.11:6443"

YURTHUB_MANIFEST = textwrap.dedent("""\

    apiVersion: v1
    kind: Pod
    metadata:
      labels:
        k8s-app: yurt-hub
      name: yurt-hub
      namespace: kube-system
    spec:
      volumes:
      - name: hub-dir
        hostPath:
          path: /var/lib/yurthub
          type: DirectoryOrCreate
      - name: kubernetes
        hostPath:
          path: /etc/kubernetes
          type: Directory
      containers:
      - name: yurt-hub
        image: openyurt/yurthub:v1.6.1
        imagePullPolicy: IfNotPresent
        volumeMounts:
        - name: hub-dir
          mountPath: /var/lib/yurthub
        - name: kubernetes
          mountPath: /etc/kubernetes
        command:
        - yurthub
        - --v=2
        - --bind-address=127.0.0.1
        - --server-addr={servers}
        - --node-name=$(NODE_NAME)
        - --bootstrap-file=/var/lib/yurthub/bootstrap-hub.conf
        - --working-mode={mode}
        - --namespace=kube-system
          
        - --enable-dummy-if=true
          
          
        - --nodepool-name=hangzhou-idc
          
        livenessProbe:
          httpGet:
            host: 127.0.0.1
            path: /v1/healthz
            port: 10267
          initialDelaySeconds: 300
          periodSeconds: 5
          failureThreshold: 3
        resources:
          requests:
            cpu: 150m
            memory: 150Mi
          limits:
            memory: 300Mi
        securityContext:
          capabilities:
            add: ["NET_ADMIN", "NET_RAW"]
        env:
        - name: NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
      hostNetwork: true
      priorityClassName: system-node-critical
      priority: 2000001000
    """)

KUBE_PROXY_MANIFEST = "apiVersion: v1\nkind: Pod\nmetadata: {name: other}\nspec:\n  containers:\n  - name: x\n    command: [sleep, '1']\n"

KUBELET_CONF_FOR_NODE = textwrap.dedent("""\

    apiVersion: v1
    clusters:
    - cluster:
        server: http://127.0.0.1:10261
      name: default-cluster
    contexts:
    - context:
        cluster: default-cluster
        namespace: default
        user: default-auth
      name: default-context
    current-context: default-context
    kind: Config
    preferences: {}
    """)


def bootstrap_hub_conf(server: str, ca_pem_b64: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: v1
        clusters:
        - cluster:
            certificate-authority-data: {ca_pem_b64}
            server: {server}
          name: kubernetes
        contexts:
        - context:
            cluster: kubernetes
            user: token-bootstrap-client
          name: token-bootstrap-client@kubernetes
        current-context: token-bootstrap-client@kubernetes
        kind: Config
        preferences: {{}}
        users:
        - name: token-bootstrap-client
          user:
            token: {TOKEN}
        """)


def hub_conf(server: str, ca_pem_b64: str, hub: str = "yurthub") -> str:
    return textwrap.dedent(f"""\
        apiVersion: v1
        clusters:
        - cluster:
            certificate-authority-data: {ca_pem_b64}
            server: {server}
          name: default-cluster
        contexts:
        - context:
            cluster: default-cluster
            namespace: default
            user: default-auth
          name: default-context
        current-context: default-context
        kind: Config
        preferences: {{}}
        users:
        - name: default-auth
          user:
            client-certificate: /var/lib/{hub}/pki/{hub}-current.pem
            client-key: /var/lib/{hub}/pki/{hub}-current.pem
        """)


def kubeadm_kubelet_conf(server: str, ca_pem_b64: str) -> str:
    """kubeadm join's /etc/kubernetes/kubelet.conf (client cert rotated to a file; here inline too)."""
    return textwrap.dedent(f"""\
        apiVersion: v1
        clusters:
        - cluster:
            certificate-authority-data: {ca_pem_b64}
            server: {server}
          name: default-cluster
        contexts:
        - context:
            cluster: default-cluster
            namespace: default
            user: default-auth
          name: default-context
        current-context: default-context
        kind: Config
        preferences: {{}}
        users:
        - name: default-auth
          user:
            client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem
            client-key-data: {CLIENT_KEY_DATA}
        """)


YURTHUB_SERVICE = "[Unit]\nDescription=YurtHub Service\nAfter=network.target\n\n[Service]\nType=simple\nExecStart=/usr/local/bin/yurthub\nRestart=always\n"


def yurthub_unit_conf(servers: str, mode: str = "edge") -> str:
    return (
        "[Service]\n"
        'Environment="YURTHUB_BOOTSTRAP_ARGS=--bootstrap-mode=kubeletcertificate"\n'
        f'Environment="YURTHUB_CONFIG_ARGS=--bind-address=127.0.0.1 --working-mode={mode} --namespace=kube-system"\n'
        'Environment="YURTHUB_EXTRA_ARGS=--v=2"\n'
        "ExecStart=\n"
        f"ExecStart=/usr/local/bin/yurthub --node-name=edge-1 --nodepool-name=hangzhou-idc --server-addr={servers} "
        "$YURTHUB_BOOTSTRAP_ARGS $YURTHUB_CONFIG_ARGS $YURTHUB_EXTRA_ARGS\n"
    )


def yurtadm_static_pod_node(root: str, ca: str, *, servers: str = f"{SERVER},{SERVER2}", mode: str = "edge",
                            with_pki: bool = True) -> None:
    """An edge node joined by `yurtadm join`: YurtHub as a static pod, kubelet through YurtHub."""
    data = b64(ca)
    write(root, "/etc/kubernetes/manifests/yurthub.yaml", YURTHUB_MANIFEST.format(servers=servers, mode=mode))
    write(root, "/etc/kubernetes/manifests/kube-proxy-like.yaml", KUBE_PROXY_MANIFEST)
    write(root, "/var/lib/yurthub/bootstrap-hub.conf", bootstrap_hub_conf(SERVER, data))
    write(root, "/var/lib/yurthub/yurthub.conf", hub_conf(SERVER, data))
    if with_pki:
        write(root, "/var/lib/yurthub/pki/ca.crt", open(ca).read())
        write(root, "/var/lib/yurthub/pki/yurthub-current.pem", f"-----BEGIN EC PRIVATE KEY-----\n{TOKEN}\n")
    write(root, "/etc/kubernetes/kubelet.conf", KUBELET_CONF_FOR_NODE)


def converted_systemd_node(root: str, ca: str, *, mode: str = "edge") -> None:
    """A kubeadm node converted by node-servant: YurtHub as a systemd service, kubelet-certificate mode."""
    write(root, "/etc/systemd/system/yurthub.service", YURTHUB_SERVICE)
    write(root, "/etc/systemd/system/yurthub.service.d/10-yurthub.conf", yurthub_unit_conf(SERVER, mode))
    write(root, "/etc/kubernetes/kubelet.conf", kubeadm_kubelet_conf(SERVER, b64(ca)))
    write(root, "/etc/kubernetes/pki/ca.crt", open(ca).read())
    write(root, "/var/lib/openyurt/kubelet.conf", KUBELET_CONF_FOR_NODE)


def kubeadm_node(root: str, ca: str, server: str = SERVER) -> None:
    write(root, "/etc/kubernetes/kubelet.conf", kubeadm_kubelet_conf(server, b64(ca)))
    write(root, "/etc/kubernetes/pki/ca.crt", open(ca).read())
    write(root, "/etc/kubernetes/manifests/kube-proxy-like.yaml", KUBE_PROXY_MANIFEST)
