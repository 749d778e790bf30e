/**
 * `make upstream`: a local HTTPS upstream for following the README without a network. It answers
 * on 127.0.0.1 (PORT, default 8443) with the fixture certificate for api.allowed.test, and echoes
 * each request's method, path and headers as JSON, as a careless API would: the secret comes back
 * in the body, and trust-protocol redacts it. Plain Node, no trust-protocol code. Ctrl-C stops it.
 */
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';

const fixtures = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../fixtures/tls');
const port = Number(process.env.PORT ?? 8443);
const server = https.createServer({
  key: fs.readFileSync(path.join(fixtures, 'server.key')),
  cert: fs.readFileSync(path.join(fixtures, 'server.pem')),
}, (req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ method: req.method, path: req.url, headers: req.headers }) + '\n');
});
server.listen(port, '127.0.0.1', () => {
  const { port } = server.address() as { port: number };
  console.log(`upstream for api.allowed.test on https://127.0.0.1:${port}; with trust-protocol use
  --allowed-domains api.allowed.test on the credential, api.allowed.test in the URL, and on exec
  or serve: --cacert ${
    path.join(fixtures, 'ca.pem')
  } --connect-to api.allowed.test:443:127.0.0.1:${port}`);
});
