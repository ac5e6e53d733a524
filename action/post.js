'use strict';
// The action's post step (action.yml `runs.post`), run when the job ends whatever its
// outcome: revoke the lease the main step granted. See lib.js.
process.exitCode = require('./lib.js').post();
