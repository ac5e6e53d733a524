'use strict';
// The action against a simulated runner and a fake `rangekeeper` on PATH that records its
// argv: what it runs, what it saves for the post step, and how it fails.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { Runner, parseFileCommands, REPO_DIR } = require('./harness.js');
const lib = require('../lib.js');

const LEASE = JSON.stringify({
  id: 'lse-7f3a',
  target: 'prod-weu',
  address: '198.51.100.7/32',
  expires: '2026-12-07T03:00:00Z',
  requestedBy: 'github:octo/app:run-42',
});

function withRunner(fn) {
  return () => {
    const r = new Runner();
    try {
      fn(r);
    } finally {
      r.cleanup();
    }
  };
}

test(
  'grant saves the lease before anything else and the post step revokes exactly it',
  withRunner((r) => {
    r.withFakeRangekeeper();
    const main = r.main(
      { file: 'fleet.yaml', target: 'prod-weu', ttl: '30m', ip: '198.51.100.7' },
      { FAKE_RK_GRANT_STDOUT: LEASE },
    );
    assert.equal(main.code, 0, main.stdout + main.stderr);
    const bin = path.join(r.fakeBin, 'rangekeeper');
    assert.deepEqual(r.calls(), [
      ['-f', 'fleet.yaml', '-o', 'json', 'grant', '--target', 'prod-weu', '--ttl', '30m', '--ip', '198.51.100.7'],
    ]);
    assert.deepEqual(r.state(), {
      lease: 'lse-7f3a',
      target: 'prod-weu',
      file: 'fleet.yaml',
      binary: bin,
      args: '[]',
      expires: '2026-12-07T03:00:00Z',
    });
    assert.deepEqual(main.outputs, {
      binary: bin,
      'lease-id': 'lse-7f3a',
      address: '198.51.100.7/32',
      expires: '2026-12-07T03:00:00Z',
    });
    assert.match(r.summary(), /lease `lse-7f3a` on `prod-weu` allows `198\.51\.100\.7\/32` until `2026-12-07T03:00:00Z`/);

    const post = r.post();
    assert.equal(post.code, 0, post.stdout + post.stderr);
    assert.deepEqual(r.calls()[1], ['-f', 'fleet.yaml', 'revoke', '--target', 'prod-weu', '--lease', 'lse-7f3a']);
    assert.match(post.stdout, /Revoked lease lse-7f3a on prod-weu/);
  }),
);

test(
  'grant passes every echo endpoint and the extra args, and revoke gets the same args',
  withRunner((r) => {
    r.withFakeRangekeeper();
    const main = r.main(
      {
        target: 'prod-use1',
        'self-echo': 'https://echo-a.example/ip\n\n  https://echo-b.example/?a=1,2  \n',
        args: '--state-dir\n/var/lib/rangekeeper',
      },
      { FAKE_RK_GRANT_STDOUT: LEASE },
    );
    assert.equal(main.code, 0, main.stdout + main.stderr);
    assert.deepEqual(r.calls()[0], [
      '-f', 'rangekeeper.yaml', '-o', 'json', 'grant', '--target', 'prod-use1', '--ttl', '20m',
      '--self-echo', 'https://echo-a.example/ip',
      '--self-echo', 'https://echo-b.example/?a=1,2',
      '--state-dir', '/var/lib/rangekeeper',
    ]);
    assert.equal(r.post().code, 0);
    assert.deepEqual(r.calls()[1], [
      '-f', 'rangekeeper.yaml', 'revoke', '--target', 'prod-use1', '--lease', 'lse-7f3a',
      '--state-dir', '/var/lib/rangekeeper',
    ]);
  }),
);

test(
  'a failed grant fails the step, saves no lease, and the post step revokes nothing',
  withRunner((r) => {
    r.withFakeRangekeeper();
    const main = r.main({ target: 'prod-weu' }, { FAKE_RK_GRANT_EXIT: '1' });
    assert.equal(main.code, 1);
    assert.match(main.stdout, /^::error::rangekeeper grant on `prod-weu` failed \(exit 1\); no lease to revoke$/m);
    assert.deepEqual(r.state(), {});
    const post = r.post();
    assert.equal(post.code, 0);
    assert.match(post.stdout, /no lease to revoke/);
    assert.equal(r.calls().length, 1, 'only the grant ran');
  }),
);

test(
  'a grant that prints no lease id is an error, not a silent lease',
  withRunner((r) => {
    r.withFakeRangekeeper();
    for (const stdout of ['', 'not json', '{"target":"t"}', '{"id":"two words"}']) {
      const main = r.main({ target: 't' }, { FAKE_RK_GRANT_STDOUT: stdout });
      assert.equal(main.code, 1, stdout);
      assert.match(main.stdout, /::error::rangekeeper grant printed no (JSON lease|lease id)/, stdout);
    }
    assert.deepEqual(r.state(), {});
  }),
);

test(
  'grant needs exactly one target and never runs rangekeeper without one',
  withRunner((r) => {
    r.withFakeRangekeeper();
    const none = r.main({});
    assert.equal(none.code, 1);
    assert.match(none.stdout, /::error::input `target` is required for `grant`/);
    const two = r.main({ target: 'a,b' });
    assert.equal(two.code, 1);
    assert.match(two.stdout, /::error::`grant` opens one target; `target` is `a,b`/);
    assert.deepEqual(r.calls(), []);
  }),
);

test(
  'a revoke that fails fails the post step and says how to revoke by hand and when the lease expires',
  withRunner((r) => {
    r.withFakeRangekeeper();
    assert.equal(r.main({ target: 'prod-weu' }, { FAKE_RK_GRANT_STDOUT: LEASE }).code, 0);
    const post = r.post({ FAKE_RK_REVOKE_EXIT: '1' });
    assert.equal(post.code, 1);
    assert.match(
      post.stdout,
      /^::error::could not revoke lease lse-7f3a on prod-weu \(rangekeeper exit 1\)\. It expires at 2026-12-07T03:00:00Z\. Revoke it with: rangekeeper -f rangekeeper\.yaml revoke --target prod-weu --lease lse-7f3a$/m,
    );
  }),
);

test(
  'validate passes the annotations through and fails on an invalid file',
  withRunner((r) => {
    r.withFakeRangekeeper();
    const annotation = '::error file=rangekeeper.yaml,line=3,col=7::`10.0.0.0/33`: prefix length 33 is over 32\n';
    const v = r.main({ command: 'validate', file: 'decl.yaml' }, { FAKE_RK_VALIDATE_STDOUT: annotation, FAKE_RK_VALIDATE_EXIT: '1' });
    assert.equal(v.code, 1);
    assert.ok(v.stdout.includes(annotation), v.stdout);
    assert.match(v.stdout, /::error::decl\.yaml is not valid \(exit 1\): see the annotations/);
    assert.deepEqual(r.calls(), [['-f', 'decl.yaml', 'validate', '-o', 'github']]);
    assert.equal(r.main({ command: 'validate' }).code, 0);
    assert.deepEqual(r.state(), {}, 'validate needs no post step');
    assert.equal(r.post().code, 0);
    assert.equal(r.calls().length, 2);
  }),
);

test(
  'plan writes the Markdown plan to a file and the summary; exit 2 means changes, not failure',
  withRunner((r) => {
    r.withFakeRangekeeper();
    const markdown = '## rangekeeper plan\n\n| target | status |\n|---|---|\n| `a` | 1 to add |\n';
    const p = r.main({ command: 'plan', target: 'a, b\nc' }, { FAKE_RK_PLAN_STDOUT: markdown, FAKE_RK_PLAN_EXIT: '2' });
    assert.equal(p.code, 0, p.stdout);
    assert.deepEqual(r.calls(), [
      ['-f', 'rangekeeper.yaml', 'plan', '-o', 'markdown', '--detailed-exitcode', '--target', 'a', '--target', 'b', '--target', 'c'],
    ]);
    assert.equal(p.outputs.changes, 'true');
    assert.equal(fs.readFileSync(p.outputs['plan-file'], 'utf8'), markdown);
    assert.ok(p.outputs['plan-file'].startsWith(r.temp), 'the plan file is in RUNNER_TEMP');
    assert.equal(r.summary(), markdown);
    assert.ok(!p.stdout.includes('| `a` |'), 'the plan is data, not log');

    const inSync = r.main({ command: 'plan' }, { FAKE_RK_PLAN_STDOUT: 'all in sync\n' });
    assert.equal(inSync.code, 0);
    assert.equal(inSync.outputs.changes, 'false');
  }),
);

test(
  'a refused plan still yields the plan file for the comment, and fails the step',
  withRunner((r) => {
    r.withFakeRangekeeper();
    const p = r.main({ command: 'plan' }, { FAKE_RK_PLAN_STDOUT: '**refused**\n', FAKE_RK_PLAN_EXIT: '1' });
    assert.equal(p.code, 1);
    assert.equal(fs.readFileSync(p.outputs['plan-file'], 'utf8'), '**refused**\n');
    assert.equal(p.outputs.changes, 'false');
    assert.match(p.stdout, /::error::rangekeeper plan failed or was refused \(exit 1\)/);
  }),
);

test(
  'without rangekeeper on PATH it is installed with cargo install --locked --path (this checkout)',
  withRunner((r) => {
    const p = r.main({ command: 'validate' });
    assert.equal(p.code, 0, p.stdout + p.stderr);
    const root = path.join(r.temp, 'rangekeeper');
    assert.deepEqual(r.cargoCalls(), [['install', '--locked', '--root', root, '--path', REPO_DIR]]);
    assert.equal(p.outputs.binary, path.join(root, 'bin', 'rangekeeper'));
    assert.deepEqual(r.calls(), [['-f', 'rangekeeper.yaml', 'validate', '-o', 'github']]);
  }),
);

test(
  'install: git uses the action repository at the ref the workflow names',
  withRunner((r) => {
    const env = { GITHUB_ACTION_REPOSITORY: 'rangekeeper/rangekeeper', GITHUB_ACTION_REF: 'v0.1.0', GITHUB_SERVER_URL: 'https://github.com' };
    assert.equal(r.main({ command: 'validate', install: 'git' }, env).code, 0);
    const root = path.join(r.temp, 'rangekeeper');
    assert.deepEqual(r.cargoCalls()[0], [
      'install', '--locked', '--root', root, '--git', 'https://github.com/rangekeeper/rangekeeper', '--tag', 'v0.1.0', 'rangekeeper',
    ]);
    assert.equal(r.main({ command: 'validate', install: 'git', 'install-source': 'https://git.example/rk.git' }).code, 0);
    assert.deepEqual(r.cargoCalls()[1], ['install', '--locked', '--root', root, '--git', 'https://git.example/rk.git', 'rangekeeper']);
  }),
);

test(
  'a failed install, install: none, a bad binary or a bad command fail with the reason',
  withRunner((r) => {
    const failed = r.main({ command: 'validate' }, { FAKE_CARGO_EXIT: '101' });
    assert.equal(failed.code, 1);
    assert.match(failed.stdout, /::error::cargo install --locked --root .* failed \(exit 101\)/);
    const none = r.main({ command: 'validate', install: 'none' });
    assert.equal(none.code, 1);
    assert.match(none.stdout, /::error::no `rangekeeper` on PATH and `install: none`/);
    const bad = r.main({ command: 'validate', binary: 'no/such/rangekeeper' });
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /::error::input `binary`: .*no\/such\/rangekeeper is not an executable file/);
    const how = r.main({ command: 'validate', install: 'brew' });
    assert.match(how.stdout, /::error::input `install` is `brew`; it must be path, git or none/);
    r.withFakeRangekeeper();
    const cmd = r.main({ command: 'apply' });
    assert.equal(cmd.code, 1);
    assert.match(cmd.stdout, /::error::input `command` is `apply`; it must be grant, validate or plan/);
    assert.deepEqual(r.calls(), [], 'rangekeeper never ran');
  }),
);

test(
  'a given binary is used even when another rangekeeper is on PATH',
  withRunner((r) => {
    r.withFakeRangekeeper();
    const own = path.join(r.dir, 'own-rangekeeper');
    fs.copyFileSync(r.fakeRk, own);
    fs.chmodSync(own, 0o755);
    const p = r.main({ command: 'validate', binary: own });
    assert.equal(p.code, 0);
    assert.equal(p.outputs.binary, own);
  }),
);

test('outside a runner (no GITHUB_STATE) grant refuses before granting a lease it could not revoke', () => {
  const r = new Runner();
  try {
    r.withFakeRangekeeper();
    const p = r.main({ target: 't' }, { GITHUB_STATE: '', FAKE_RK_GRANT_STDOUT: LEASE });
    assert.equal(p.code, 1);
    assert.match(p.stdout, /::error::GITHUB_STATE is not set, so the lease could not be revoked after the job: nothing was granted/);
    assert.deepEqual(r.calls(), [], 'nothing was granted');
  } finally {
    r.cleanup();
  }
});

test('workflow-command data is escaped', () => {
  assert.equal(lib.escapeData('50%\r\nnext'), '50%25%0D%0Anext');
});

test('git refs pin a commit, a tag or a branch', () => {
  assert.deepEqual(lib.gitRefFlags(''), []);
  assert.deepEqual(lib.gitRefFlags('0123456789abcdef0123456789abcdef01234567'), ['--rev', '0123456789abcdef0123456789abcdef01234567']);
  assert.deepEqual(lib.gitRefFlags('v1.2.0'), ['--tag', 'v1.2.0']);
  assert.deepEqual(lib.gitRefFlags('main'), ['--branch', 'main']);
});

test('values with newlines survive the state file', () => {
  const r = new Runner();
  try {
    fs.writeFileSync(r.stateFile, 'a<<X\nline 1\nline 2\nX\nb=plain\n');
    assert.deepEqual(parseFileCommands(fs.readFileSync(r.stateFile, 'utf8')), { a: 'line 1\nline 2', b: 'plain' });
  } finally {
    r.cleanup();
  }
});

test('action.yml names the scripts and every input the code reads', () => {
  const yml = fs.readFileSync(path.join(REPO_DIR, 'action.yml'), 'utf8');
  assert.match(yml, /using: node20\n\s+main: action\/main\.js\n\s+post: action\/post\.js/);
  const code = fs.readFileSync(path.join(__dirname, '..', 'lib.js'), 'utf8');
  const read = new Set([...code.matchAll(/get(?:Input|Lines|List)\(env, '([a-z-]+)'\)/g)].map((m) => m[1]));
  const declared = new Set([...yml.matchAll(/^ {2}([a-z-]+):\n {4}description:/gm)].map((m) => m[1]));
  for (const name of read) assert.ok(declared.has(name), `input ${name} is read but not in action.yml`);
});
