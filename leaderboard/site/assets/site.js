/* segbench leaderboard: sorting, filtering, the ε selector and highlighting. Hand-written, no
   dependencies, no network; every page works without it (the default ε column is shown). */
(function () {
  'use strict';

  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) { return ''; }
    return cell.hasAttribute('data-v') ? cell.getAttribute('data-v') : cell.textContent.trim();
  }

  // Sorting: click a header; numbers by value and missing values (empty data-v) always last.
  function sortTable(table, index, type, th) {
    var body = table.tBodies[0];
    var dir = th.getAttribute('aria-sort') === 'ascending' ? 'descending' : 'ascending';
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir);
    var sign = dir === 'ascending' ? 1 : -1;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, index), y = cellValue(b, index);
      if (type === 'num') {
        var fx = x === '' ? NaN : parseFloat(x), fy = y === '' ? NaN : parseFloat(y);
        if (isNaN(fx) && isNaN(fy)) { return 0; }
        if (isNaN(fx)) { return 1; }
        if (isNaN(fy)) { return -1; }
        return sign * (fx - fy);
      }
      if (x === '' && y !== '') { return 1; }
      if (y === '' && x !== '') { return -1; }
      return sign * x.localeCompare(y, undefined, {numeric: true, sensitivity: 'base'});
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  function setupSorting() {
    document.querySelectorAll('table.sortable').forEach(function (table) {
      if (!table.tHead) { return; }
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
        var button = th.querySelector('button');
        if (!button) { return; }
        button.addEventListener('click', function () {
          sortTable(table, index, th.getAttribute('data-type') || 'text', th);
        });
      });
    });
  }

  // Filtering: every word of the query must occur in the row's data-search text.
  function applyFilter(id) {
    var table = document.getElementById(id);
    if (!table) { return; }
    var input = document.querySelector('input.filter[data-table="' + id + '"]');
    var flagged = document.querySelector('input.flagged-only[data-table="' + id + '"]');
    var words = (input ? input.value : '').toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0, total = 0;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      var text = (row.getAttribute('data-search') || row.textContent).toLowerCase();
      var ok = words.every(function (w) { return text.indexOf(w) >= 0; });
      if (flagged && flagged.checked && row.getAttribute('data-flagged') !== '1') { ok = false; }
      row.hidden = !ok;
      total += 1;
      if (ok) { shown += 1; }
    });
    var count = document.querySelector('.count[data-table="' + id + '"]');
    if (count) { count.textContent = shown === total ? total + ' rows' : shown + ' of ' + total + ' rows'; }
  }

  function setupFilters() {
    document.querySelectorAll('input.filter, input.flagged-only').forEach(function (input) {
      var id = input.getAttribute('data-table');
      input.addEventListener('input', function () { applyFilter(id); });
      input.addEventListener('change', function () { applyFilter(id); });
      applyFilter(id);
    });
    document.querySelectorAll('input.show-ci').forEach(function (input) {
      var table = document.getElementById(input.getAttribute('data-table'));
      input.addEventListener('change', function () { table.classList.toggle('hide-ci', !input.checked); });
    });
  }

  // The ε selector: show the per-attack IoU ratio columns of one ε.
  function setupEpsilon() {
    document.querySelectorAll('select.eps-select').forEach(function (select) {
      var table = document.getElementById(select.getAttribute('data-table'));
      function show() {
        table.querySelectorAll('[data-eps]').forEach(function (cell) {
          cell.hidden = cell.getAttribute('data-eps') !== select.value;
        });
      }
      select.addEventListener('change', show);
      show();
    });
  }

  // Highlighting: every element of a model (table rows, chart lines, legend entries).
  var highlighted = {};
  function refreshHighlight() {
    var any = Object.keys(highlighted).length > 0;
    document.body.classList.toggle('has-hl', any);
    document.querySelectorAll('[data-model]').forEach(function (el) {
      var model = el.getAttribute('data-model');
      var base = model.split('::')[0];
      var on = highlighted.hasOwnProperty(model) || highlighted.hasOwnProperty(base);
      el.classList.toggle('hl', on);
      if (el.classList.contains('hl-btn')) { el.classList.toggle('active', on); }
    });
  }

  function setupHighlight() {
    document.querySelectorAll('button.hl-btn').forEach(function (button) {
      button.addEventListener('click', function (event) {
        event.stopPropagation();
        var model = button.getAttribute('data-model');
        if (highlighted.hasOwnProperty(model)) { delete highlighted[model]; } else { highlighted[model] = true; }
        refreshHighlight();
      });
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    setupSorting();
    setupFilters();
    setupEpsilon();
    setupHighlight();
    document.documentElement.setAttribute('data-ready', '1');
  });
}());
