'use strict';
// End to end: the action's main and post steps with the real rangekeeper binary
// (RANGEKEEPER_BIN, which scripts/test.sh sets to target/debug/rangekeeper) on a `file`
// target. scripts/test.sh runs this file only when that binary has `grant`.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const { Runner } = require('./harness.js');

const BIN = process.env.RANGEKEEPER_BIN;

const DECLARATION = `version: 1
targets:
  edge:
    provider: file
    path: allow.txt
    allow: [203.0.113.0/24]
`;

function rangekeeper(cwd, args) {
  const r = spawnSync(BIN, args, { cwd, encoding: 'utf8' });
  assert.equal(r.status, 0, `rangekeeper ${args.join(' ')}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

test('RANGEKEEPER_BIN names the binary under test', () => {
  assert.ok(BIN, 'set RANGEKEEPER_BIN to a rangekeeper binary with `grant`');
  fs.accessSync(BIN, fs.constants.X_OK);
});

test('grant in the main step opens the file target to the address, the post step closes it', () => {
  const r = new Runner();
  try {
    fs.writeFileSync(path.join(r.work, 'rangekeeper.yaml'), DECLARATION);
    rangekeeper(r.work, ['-f', 'rangekeeper.yaml', 'apply', '--yes']);
    assert.equal(fs.readFileSync(path.join(r.work, 'allow.txt'), 'utf8').includes('198.51.100.7'), false);

    const main = r.main({ target: 'edge', ttl: '20m', ip: '198.51.100.7', binary: BIN });
    assert.equal(main.code, 0, main.stdout + main.stderr);
    const id = r.state().lease;
    assert.ok(id, 'the lease id is saved for the post step');
    assert.equal(main.outputs['lease-id'], id);
    assert.match(main.outputs.address, /^198\.51\.100\.7(\/32)?$/);
    assert.ok(fs.readFileSync(path.join(r.work, 'allow.txt'), 'utf8').includes('198.51.100.7'));
    const leases = JSON.parse(rangekeeper(r.work, ['-f', 'rangekeeper.yaml', 'leases', '--target', 'edge', '-o', 'json']));
    const listed = Array.isArray(leases) ? leases : leases.leases;
    assert.deepEqual(listed.map((l) => l.id), [id]);

    const post = r.post();
    assert.equal(post.code, 0, post.stdout + post.stderr);
    const after = fs.readFileSync(path.join(r.work, 'allow.txt'), 'utf8');
    assert.equal(after.includes('198.51.100.7'), false, after);
    assert.ok(after.includes('203.0.113.0/24'), 'the declared ranges stay');
    const left = JSON.parse(rangekeeper(r.work, ['-f', 'rangekeeper.yaml', 'leases', '--target', 'edge', '-o', 'json']));
    assert.deepEqual(Array.isArray(left) ? left : left.leases, []);

    // The post step of a job whose lease is already gone (revoked by hand) still succeeds.
    const again = r.post();
    assert.equal(again.code, 0, again.stdout + again.stderr);
  } finally {
    r.cleanup();
  }
});

test('plan -o markdown through the action: the plan file is the pull-request comment', () => {
  const r = new Runner();
  try {
    fs.writeFileSync(path.join(r.work, 'rangekeeper.yaml'), DECLARATION);
    const p = r.main({ command: 'plan', binary: BIN });
    assert.equal(p.code, 0, p.stdout + p.stderr);
    assert.equal(p.outputs.changes, 'true');
    const comment = fs.readFileSync(p.outputs['plan-file'], 'utf8');
    assert.match(comment, /`edge`/);
    assert.match(comment, /203\.0\.113\.0\/24/);
    assert.equal(r.summary(), comment);
  } finally {
    r.cleanup();
  }
});
