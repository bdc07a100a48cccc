#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Throwaway PKI for the Kubernetes API stand-in, made with the openssl command in DIR:
#   ca.crt/ca.key          the CA that signs the server and client certificates
#   server.crt/server.key  the API server (SAN IP:127.0.0.1, DNS:localhost)
#   client.crt/client.key  a client certificate (CN=system:serviceaccount:velero:cofferd)
#   other-ca.crt           an unrelated CA (the "wrong CA" case)
set -eu
dir=$1
cd "$dir"
q() { "$@" >/dev/null 2>&1 || { echo "kube_certs.sh: failed: $*" >&2; exit 1; }; }
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=coffer-test-ca" -keyout ca.key -out ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
q openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=kube-apiserver" \
  -keyout server.key -out server.csr
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > server.ext
q openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
  -extfile server.ext -out server.crt
q openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/O=system:serviceaccounts/CN=system:serviceaccount:velero:cofferd" \
  -keyout client.key -out client.csr
printf 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n' > client.ext
q openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
  -extfile client.ext -out client.crt
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=unrelated-ca" -keyout other-ca.key -out other-ca.crt
chmod 600 ./*.key
