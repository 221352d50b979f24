// werift-dtls as a DTLS 1.2 client or server on 127.0.0.1, for `dtls-ossl conformance`.
// Usage: node werift_peer.js server|client CERT_PEM KEY_PEM ECDSA|RSA SRTP_IANA_ID [PORT]
// Prints one line per event: "LISTENING <port>", "CONNECTED <json>", "DATA <hex>" (and echoes
// the data back), "ERROR <message>", "CLOSED". werift sends no close_notify.
"use strict";
const dgram = require("node:dgram");
const fs = require("node:fs");
// werift-dtls 0.5.8's package.json "main" names a file it does not ship: use the real entry.
const dtls = require("werift-dtls/lib/dtls/src");

const [mode, certFile, keyFile, keyKind, profileId, portArg] = process.argv.slice(2);
const out = (line) => process.stdout.write(`${line}\n`);
const SUITES = { 49195: "ECDHE-ECDSA-AES128-GCM-SHA256", 49199: "ECDHE-RSA-AES128-GCM-SHA256" };
const CURVES = { 29: "x25519", 23: "secp256r1" };
const PROFILES = { 1: ["SRTP_AES128_CM_SHA1_80", 60], 7: ["SRTP_AEAD_AES_128_GCM", 56] };

const socket = dgram.createSocket("udp4");
let remote = mode === "client" ? { address: "127.0.0.1", port: Number(portArg) } : undefined;
const transport = {
  type: "udp",
  closed: false,
  onData: () => {},
  get address() { return socket.address(); },
  send: (data, addr) =>
    new Promise((resolve) => {
      const to = addr || remote;
      if (!to) return resolve();
      socket.send(data, to.port, to.address, () => resolve());
    }),
  close: async () => { transport.closed = true; socket.close(); },
};
socket.on("message", (data, rinfo) => {
  if (!remote) remote = { address: rinfo.address, port: rinfo.port };
  transport.onData(data, [rinfo.address, rinfo.port]);
});

socket.bind(0, "127.0.0.1", () => {
  const options = {
    transport,
    cert: fs.readFileSync(certFile, "utf8"),
    key: fs.readFileSync(keyFile, "utf8"),
    signatureHash: { hash: 4, signature: keyKind === "RSA" ? 1 : 3 },
    srtpProfiles: [Number(profileId)],
    certificateRequest: true,
  };
  const peer = mode === "server" ? new dtls.DtlsServer(options) : new dtls.DtlsClient(options);
  peer.onConnect.subscribe(() => {
    const profile = peer.srtp.srtpProfile;
    const [name, length] = PROFILES[profile] || [null, 0];
    const info = {
      cipher: SUITES[peer.cipher.cipherSuite] || String(peer.cipher.cipherSuite),
      curve: CURVES[peer.cipher.namedCurve] ?? null, // set on the server side only
      srtp_profile: name,
      keying_material: length
        ? peer.exportKeyingMaterial("EXTRACTOR-dtls_srtp", length).toString("hex")
        : null,
      remote_certificate: peer.remoteCertificate
        ? Buffer.from(peer.remoteCertificate).toString("hex")
        : null,
    };
    out(`CONNECTED ${JSON.stringify(info)}`);
  });
  peer.onData.subscribe((data) => {
    out(`DATA ${Buffer.from(data).toString("hex")}`);
    peer.send(data).catch((e) => out(`ERROR send: ${e}`));
  });
  peer.onError.subscribe((e) => out(`ERROR ${e && e.message ? e.message : e}`));
  peer.onClose.subscribe(() => out("CLOSED"));
  out(`LISTENING ${socket.address().port}`);
  if (mode === "client") peer.connect().catch((e) => out(`ERROR connect: ${e}`));
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
