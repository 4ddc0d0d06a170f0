// @vwed/lab: JupyterLab against a VWED gateway (the vwed_lab Jupyter Server extension).
//
// 1. JupyterLab polls the running kernels and sessions about every 10 s; a script started
//    meanwhile is in Jupyter Server within a second (vwed_lab) but not yet in the Running
//    panel. While the server says it is in front of a VWED gateway (GET vwed-lab/status), this
//    refreshes both lists every second, and at once when vwed_lab's script sessions changed
//    (not while the page is hidden).
// 2. The Running panel shuts a kernel down through the service manager's kernel manager
//    (RunningKernel.shutdown -> kernels.shutdown(id); "Shut Down All" -> kernels.shutdownAll()),
//    a session through the session manager; a console or notebook through its session
//    connection (made by sessions.connectTo). These are wrapped on the app's managers: when
//    the kernel is a script's (the gateway lists it with `vwed` metadata, or its session is
//    vwed_lab's: a console named by its path on a `vwed` kernel), a dialog asks first that
//    this stops a production script; Cancel leaves it running.

import { Dialog, showDialog } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

const STATUS = 'vwed-lab/status';

async function vwedStatus(settings) {
  const url = URLExt.join(settings.baseUrl, STATUS);
  try {
    const response = await ServerConnection.makeRequest(url, {}, settings);
    if (!response.ok) {
      return null; // vwed_lab not enabled on this server
    }
    return await response.json();
  } catch (reason) {
    return null;
  }
}

// The script a kernel runs ("warehouse/controller.py", "... (replica 1)"), or null.
function scriptOf(kernelId, kernels, sessions) {
  for (const model of kernels.running()) {
    if (model.id === kernelId && model.vwed && model.vwed.script_path) {
      const replica = model.vwed.replica || 0;
      const path = String(model.vwed.script_path);
      return replica ? `${path} (replica ${replica})` : path;
    }
  }
  for (const session of sessions.running()) {
    const kernel = session.kernel;
    if (
      kernel &&
      kernel.id === kernelId &&
      kernel.name === 'vwed' &&
      session.type === 'console' &&
      session.name === session.path
    ) {
      return session.path;
    }
  }
  return null;
}

function sessionKernel(sessionId, sessions) {
  for (const session of sessions.running()) {
    if (session.id === sessionId) {
      return session.kernel ? session.kernel.id : null;
    }
  }
  return null;
}

async function confirmStop(scripts) {
  const title =
    scripts.length === 1
      ? `Stop the production script ${scripts[0]}?`
      : `Stop ${scripts.length} production scripts?`;
  const body =
    (scripts.length === 1
      ? 'Its kernel runs a production script of the VWED gateway: shutting it down stops the script'
      : `These kernels run production scripts of the VWED gateway (${scripts.join(', ')}): ` +
        'shutting them down stops the scripts') +
    ' (its routes, functions, events and timers) until it is started again.';
  const result = await showDialog({
    title,
    body,
    buttons: [
      Dialog.cancelButton({ label: 'Cancel' }),
      Dialog.warnButton({ label: scripts.length === 1 ? 'Stop script' : 'Stop scripts' })
    ],
    defaultButton: 0
  });
  return result.button.accept;
}

function guardShutdown(kernels, sessions) {
  const kernelShutdown = kernels.shutdown.bind(kernels);
  const kernelShutdownAll = kernels.shutdownAll.bind(kernels);
  const sessionShutdown = sessions.shutdown.bind(sessions);
  const sessionShutdownAll = sessions.shutdownAll.bind(sessions);

  kernels.shutdown = async id => {
    const script = scriptOf(id, kernels, sessions);
    if (script !== null && !(await confirmStop([script]))) {
      return; // Cancel: the script keeps running
    }
    return kernelShutdown(id);
  };
  sessions.shutdown = async id => {
    const kernelId = sessionKernel(id, sessions);
    const script = kernelId === null ? null : scriptOf(kernelId, kernels, sessions);
    if (script !== null && !(await confirmStop([script]))) {
      return;
    }
    return sessionShutdown(id);
  };

  // a console or notebook attached to a script (Kernel > Shut Down Kernel, or closing it with
  // "shut down the kernel"): SessionContext.shutdown() -> its SessionConnection's shutdown().
  // Cancel rejects, as a failed shutdown does: SessionContext keeps the session connected.
  const connectTo = sessions.connectTo.bind(sessions);
  sessions.connectTo = options => {
    const connection = connectTo(options);
    const shutdown = connection.shutdown.bind(connection);
    connection.shutdown = async () => {
      const kernelId = connection.kernel ? connection.kernel.id : null;
      const script = kernelId === null ? null : scriptOf(kernelId, kernels, sessions);
      if (script !== null && !(await confirmStop([script]))) {
        throw new Error(`Cancelled: the production script ${script} keeps running`);
      }
      return shutdown();
    };
    return connection;
  };

  // "Shut Down All": the other kernels go; the scripts only if the author says so
  async function shutdownAll(original, shutdownOne, ids) {
    const scripts = ids
      .map(id => [id, scriptOf(id, kernels, sessions)])
      .filter(([, script]) => script !== null);
    if (scripts.length === 0) {
      return original();
    }
    const stopScripts = await confirmStop(scripts.map(([, script]) => script));
    const keep = new Set(stopScripts ? [] : scripts.map(([id]) => id));
    await Promise.allSettled(ids.filter(id => !keep.has(id)).map(id => shutdownOne(id)));
    await Promise.all([kernels.refreshRunning(), sessions.refreshRunning()]);
  }
  kernels.shutdownAll = async () => {
    await kernels.refreshRunning();
    const ids = Array.from(kernels.running(), model => model.id);
    return shutdownAll(kernelShutdownAll, kernelShutdown, ids);
  };
  sessions.shutdownAll = async () => {
    await sessions.refreshRunning();
    const models = Array.from(sessions.running());
    const byKernel = new Map(models.filter(s => s.kernel).map(s => [s.kernel.id, s.id]));
    const scriptKernels = Array.from(byKernel.keys()).filter(
      id => scriptOf(id, kernels, sessions) !== null
    );
    if (scriptKernels.length === 0) {
      return sessionShutdownAll();
    }
    const stopScripts = await confirmStop(scriptKernels.map(id => scriptOf(id, kernels, sessions)));
    const keep = new Set(stopScripts ? [] : scriptKernels);
    await Promise.allSettled(
      models.filter(s => !(s.kernel && keep.has(s.kernel.id))).map(s => sessionShutdown(s.id))
    );
    await sessions.refreshRunning();
  };
}

// Every second, and as soon as vwed_lab's generation of script sessions moved (asked every
// 0.25 s: a local answer of the server, no gateway round trip), refresh JupyterLab's running
// kernels and sessions. vwed_lab looks at the gateway every second: a script started shows in
// the Running panel about 1.3 s after its start (2 s is the requirement).
const CHECK = 250; // ms between looks at vwed-lab/status

function pollRunning(kernels, sessions, serverSettings, status) {
  const every = Math.max(0.5, status.poll || 1) * 1000;
  let generation = status.generation;
  let last = 0;
  let busy = false;
  const refresh = async () => {
    last = Date.now();
    await Promise.all([kernels.refreshRunning(), sessions.refreshRunning()]);
  };
  const tick = async () => {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    try {
      const now = await vwedStatus(serverSettings);
      const moved = !!now && now.generation !== generation;
      if (now) {
        generation = now.generation;
      }
      if (moved || Date.now() - last >= every) {
        await refresh();
      }
    } catch (reason) {
      // the server restarting, say: JupyterLab's own poll reports it; try again next tick
    } finally {
      busy = false;
    }
  };
  return window.setInterval(tick, CHECK);
}

const plugin = {
  id: '@vwed/lab:plugin',
  description:
    'Before a VWED gateway: running scripts shown within a second; stopping one asks first.',
  autoStart: true,
  activate: async app => {
    const { kernels, sessions, serverSettings } = app.serviceManager;
    // ScriptSessions recognises the gateway within a second of the server's start: ask again
    // a few times before deciding it is not a VWED gateway
    let status = null;
    for (let attempt = 0; attempt < 10; attempt++) {
      status = await vwedStatus(serverSettings);
      if (status === null || status.vwed) {
        break;
      }
      await new Promise(resolve => window.setTimeout(resolve, 1000));
    }
    if (!status || !status.vwed) {
      return;
    }
    guardShutdown(kernels, sessions);
    pollRunning(kernels, sessions, serverSettings, status);
    console.info(`@vwed/lab: VWED gateway ${status.vwed}: the running list follows its scripts`);
  }
};

export default plugin;
