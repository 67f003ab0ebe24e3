// The stepper: step through a race one move at a time (contract: the JSON trees that
// `python -m snippets.explorer --trees` exports). Every string of a tree is set with
// textContent, never parsed as HTML. The only request is the tree's own JSON.
(function () {
  'use strict';

  // el('p', {class: 'x'}, child, 'text', ...); null attributes and children are left out.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value != null) node.setAttribute(name, value);
    }
    node.append(...children.filter((child) => child != null));
    return node;
  }

  // What the address asks for: {schedule: ['R', 'W'], stepper: id or null}, or null.
  function wanted() {
    const params = new URLSearchParams(location.hash.slice(1));
    if (!params.has('schedule')) return null;
    const text = params.get('schedule').trim();
    return {schedule: text ? text.split('-') : [], stepper: params.get('stepper')};
  }

  const all = [...document.querySelectorAll('div.stepper[data-tree]')];

  function targets(root) {
    const want = wanted();
    return want && (want.stepper ? want.stepper === root.dataset.stepper : root === all[0]) ? want : null;
  }

  function Stepper(root, tree) {
    const T = tree.text;
    const actors = tree.actors;
    let nodes = [0];   // the node after each step; nodes[0] is the start
    let names = [];    // who took each step

    const button = (role, label, action) => {
      const b = el('button', {type: 'button', 'data-role': role}, label);
      b.addEventListener('click', action);
      return b;
    };
    const moves = el('div', {class: 'stepper__moves', role: 'group', 'aria-label': 'Who moves next'});
    const back = button('back', 'Back', () => rewind(names.length - 1));
    const restart = button('restart', 'Restart', () => rewind(0));
    const race = button('race', 'Show me the race', showRace);
    const random = button('random', 'Finish at random', finishAtRandom);
    const share = button('share', 'Share', shareLink);
    const schedule = el('code', {'data-role': 'schedule'});
    const verdict = el('div', {class: 'stepper__verdict', 'data-role': 'verdict'});
    const note = el('p', {class: 'stepper__note', hidden: ''});
    const state = el('div', {class: 'stepper__state', 'data-role': 'state'});
    const head = el('tr', null, el('th', {scope: 'col'}, 'Step'),
      ...actors.map((a) => el('th', {scope: 'col'}, a.label)));
    const rows = el('tbody');
    // md-typeset__scrollwrap: Material's own box for wide tables, so the lanes scroll
    // inside it on a phone instead of widening the page.
    const lanes = el('div', {class: 'stepper__lanes md-typeset__scrollwrap', 'data-role': 'lanes'},
      el('table', {class: 'stepper__table'},
        el('caption', null, 'Steps so far, one column per actor'),
        el('thead', null, head), rows));
    const status = el('p', {class: 'stepper__status', 'aria-live': 'polite', role: 'status'});
    const counts = `${tree.bad} bad of ${tree.total} schedule${tree.total === 1 ? '' : 's'}`;

    // The hook labels the placeholder as a group; a label needs a role to be allowed.
    if (root.hasAttribute('aria-label') && !root.hasAttribute('role')) root.setAttribute('role', 'group');
    root.replaceChildren(
      el('p', {class: 'stepper__counts'}, 'Step through it: ', el('strong', null, counts),
        ' (every order of the steps, each a schedule).'),
      moves,
      el('p', {class: 'stepper__hint'}, 'Keys: 1–9 choose who moves, Backspace or ← goes back.'),
      el('div', {class: 'stepper__controls'}, back, restart, race, random, share),
      el('p', {class: 'stepper__schedule'}, 'Schedule: ', schedule),
      verdict, note, status,
      el('div', {class: 'stepper__body'}, state, lanes));

    const node = (i) => tree.nodes[i];
    const actorIndex = (name) => actors.findIndex((a) => a.name === name);
    const moveTo = (from, to) => node(from).m.find((m) => m[4] === to);

    // The nodes along `list` (actor names) from the start, or a message saying why not.
    function follow(list) {
      const path = [0];
      for (const [i, name] of list.entries()) {
        const here = node(path[path.length - 1]);
        const move = (here.m || []).find((m) => m[0] === actorIndex(name));
        if (!move) return `step ${i + 1} names ${JSON.stringify(name)}, which cannot move there`;
        path.push(move[4]);
      }
      return path;
    }

    function panels(i) {
      return new Map(tree.states[node(i).s].map(([p, lines]) => [T[p], lines.map((l) => T[l])]));
    }

    function render() {
      const here = node(nodes[nodes.length - 1]);
      const keep = root.contains(document.activeElement) ? document.activeElement : null;

      moves.replaceChildren(...(here.m || []).map((m, n) => {
        const actor = actors[m[0]];
        const b = el('button', {type: 'button', 'data-actor': actor.name, 'aria-keyshortcuts': n < 9 ? String(n + 1) : null},
          el('span', {class: 'stepper__key', 'aria-hidden': 'true'}, String(n + 1)),
          `${actor.label}: ${T[m[1]]}`);
        b.addEventListener('click', () => take(actor.name));
        return b;
      }));
      back.disabled = restart.disabled = names.length === 0;
      schedule.textContent = names.join(' ');

      // The state now; a line that the last step added is marked.
      const now = panels(nodes[nodes.length - 1]);
      const before = nodes.length > 1 ? panels(nodes[nodes.length - 2]) : now;
      state.replaceChildren(...[...now].map(([name, lines]) => {
        const old = before.get(name) || [];
        return el('section', {class: 'stepper__panel', 'data-panel': name},
          el('p', {class: 'stepper__panel-name'}, name),
          el('ul', null, ...lines.map((line) => el('li', {class: old.includes(line) ? null : 'stepper__changed'}, line))));
      }));

      rows.replaceChildren(...names.map((name, i) => {
        const m = moveTo(nodes[i], nodes[i + 1]);
        const cells = actors.map((a, c) => el('td', {class: m[5] ? 'stepper__failed' : null}, ...(c !== m[0] ? [] : [
          el('span', {class: 'stepper__op'}, T[m[1]]), ' ',
          el('span', {class: 'stepper__result'}, `→ ${T[m[2]]}`), ' ',
          el('span', {class: 'stepper__store'}, `(${T[m[3]]}${m[5] ? ', failed' : ''})`)])));
        const rewindTo = el('button', {type: 'button', 'aria-label': `Rewind to just after step ${i + 1}`}, String(i + 1));
        rewindTo.addEventListener('click', () => rewind(i + 1));
        return el('tr', {'data-step': i, 'aria-current': i === names.length - 1 ? 'step' : null},
          el('th', {scope: 'row'}, rewindTo), ...cells);
      }));
      lanes.hidden = names.length === 0;

      if (here.m) {
        verdict.removeAttribute('data-verdict');
        verdict.replaceChildren();
      } else {
        verdict.dataset.verdict = here.v === null ? 'ok' : 'bad';
        verdict.replaceChildren(
          el('p', {class: 'stepper__verdict-text'}, here.v === null ? 'OK: the invariant holds' : `Bad: ${T[here.v]}`),
          el('ul', null, ...here.r.map(([a, value]) => el('li', null, `${actors[a].label} returned ${T[value]}`))));
      }

      // Keep the keyboard in the widget when the focused button went away.
      if (keep && !root.contains(keep)) {
        (moves.querySelector(`[data-actor="${CSS.escape(keep.dataset.actor || '')}"]`)
          || moves.querySelector('button') || (back.disabled ? race : back)).focus();
      }
    }

    function say(text) { status.textContent = text; }

    function announce() {
      const i = names.length - 1;
      if (i < 0) return say('At the start: nothing has run yet.');
      const m = moveTo(nodes[i], nodes[i + 1]);
      const end = node(nodes[i + 1]).m ? '' : ` End: ${verdict.querySelector('p').textContent}.`;
      say(`Step ${i + 1}: ${actors[m[0]].label} ${T[m[1]]} → ${T[m[2]]}.${end}`);
    }

    // The address follows the stepper last used (replaceState: no history entry per step).
    function updateAddress() {
      const keepStepper = root !== all[0] ? `&stepper=${encodeURIComponent(root.dataset.stepper)}` : '';
      const hash = names.length ? `#schedule=${names.join('-')}${keepStepper}` : '';
      history.replaceState(history.state, '', location.pathname + location.search + hash);
    }

    function moved() {
      note.hidden = true;
      render();
      announce();
      updateAddress();
    }

    function take(name) {
      const next = follow([...names, name]);
      if (typeof next === 'string') return;
      nodes = next;
      names.push(name);
      moved();
    }

    function rewind(length) {
      if (length < 0) return;
      nodes = nodes.slice(0, length + 1);
      names = names.slice(0, length);
      moved();
    }

    function jump(list) {
      const path = follow(list);
      if (typeof path === 'string') return path;
      [nodes, names] = [path, list.slice()];
      return null;
    }

    // The page's race, or the first bad leaf if the tree names none that fits.
    function showRace() {
      if (!tree.race || jump(tree.race)) {
        const search = (i, list) => {
          const n = node(i);
          if (!n.m) return n.v !== null ? list : null;
          for (const m of n.m) {
            const found = search(m[4], [...list, actors[m[0]].name]);
            if (found) return found;
          }
          return null;
        };
        jump(search(0, []) || []);
      }
      moved();
    }

    function finishAtRandom() {
      for (let here = node(nodes[nodes.length - 1]); here.m; here = node(nodes[nodes.length - 1])) {
        const m = here.m[Math.floor(Math.random() * here.m.length)];
        names.push(actors[m[0]].name);
        nodes.push(m[4]);
      }
      moved();
    }

    function shareLink() {
      updateAddress();
      const url = location.href;
      const done = () => say(`Link copied: ${url}`);
      const fallback = () => say(`The link is in the address bar: ${url}`);
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(url).then(done, fallback);
      } else {
        fallback();
      }
    }

    root.addEventListener('keydown', (event) => {
      if (event.altKey || event.ctrlKey || event.metaKey) return;
      if (/^[1-9]$/.test(event.key)) {
        const choice = moves.querySelectorAll('button')[Number(event.key) - 1];
        if (choice) { event.preventDefault(); choice.click(); }
      } else if ((event.key === 'Backspace' || event.key === 'ArrowLeft') && names.length) {
        event.preventDefault();
        rewind(names.length - 1);
      }
    });

    // Open at the schedule the address names, if it names this stepper.
    this.open = function (want) {
      const problem = jump(want.schedule);
      if (problem) jump([]);
      render();
      if (!problem) return announce();
      note.textContent = `The schedule in the address (${want.schedule.join(' ')}) does not fit this race: ${problem}. Starting from the beginning.`;
      note.hidden = false;
    };
    render();
  }

  // A stepper the address names may sit in a closed admonition or a hidden content tab
  // (the comparison page's cells): open them, then bring it on screen.
  function reveal(root) {
    for (let d = root.closest('details'); d; d = d.parentElement.closest('details')) d.open = true;
    for (let block = root.closest('.tabbed-block'); block;
      block = block.parentElement.closest('.tabbed-block')) {
      const index = [...block.parentElement.children].indexOf(block);
      const input = block.closest('.tabbed-set').querySelectorAll(':scope > input')[index];
      if (input && !input.checked) input.click();
    }
    root.scrollIntoView({block: 'start'});
  }

  function load(root) {
    if (root.dataset.loading) return;
    root.dataset.loading = 'true';
    fetch(root.dataset.tree)
      .then((response) => {
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        return response.json();
      })
      .then((tree) => {
        if (tree.version !== 1) throw new Error(`unknown tree version ${tree.version}`);
        const stepper = new Stepper(root, tree);
        root.stepper = stepper;
        const want = targets(root);
        if (want) {
          stepper.open(want);
          reveal(root);
        }
        root.dataset.ready = 'true';
      })
      .catch((error) => {
        root.replaceChildren(el('p', {class: 'stepper__note'}, `The stepper could not load (${error.message}); the diagram below shows the race.`));
      });
  }

  // Fetch a tree only when its stepper nears the screen, or at once if the address names it.
  const observer = 'IntersectionObserver' in window ? new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (entry.isIntersecting) { observer.unobserve(entry.target); load(entry.target); }
    }
  }, {rootMargin: '300px 0px'}) : null;
  for (const root of all) {
    if (targets(root) || !observer) load(root); else observer.observe(root);
  }

  // A schedule pasted into the address of an open page.
  window.addEventListener('hashchange', () => {
    for (const root of all) {
      const want = targets(root);
      if (!want) continue;
      if (root.stepper) { root.stepper.open(want); reveal(root); } else { reveal(root); load(root); }
    }
  });
})();
