// The submission form: the code field becomes a code editor (vendored CodeMirror 6, the global
// `CrucibleCodeMirror`) with Python highlighting, line numbers and Tab to indent; Ctrl/Cmd+Enter
// submits. The textarea stays the form's field (kept in step with the editor), so the form posts
// as it does without JavaScript. An error summary, if any, takes the focus; a chosen file's name
// shows as the run's name when none is typed.

const form = document.querySelector("form.submit-form");
const textarea = document.getElementById("id_code");
const CM = window.CrucibleCodeMirror;

function submitForm() {
  if (typeof form.requestSubmit === "function") form.requestSubmit();
  else form.submit();
  return true;
}

if (form && textarea && CM) {
  const sync = CM.EditorView.updateListener.of((update) => {
    if (update.docChanged) textarea.value = update.state.doc.toString();
  });
  const view = new CM.EditorView({
    parent: textarea.parentElement,
    state: CM.EditorState.create({
      doc: textarea.value,
      extensions: [
        CM.lineNumbers(),
        CM.highlightActiveLineGutter(),
        CM.highlightActiveLine(),
        CM.history(),
        CM.drawSelection(),
        CM.indentOnInput(),
        CM.bracketMatching(),
        CM.indentUnit.of("    "),
        CM.python(),
        CM.placeholder(textarea.placeholder || ""),
        CM.EditorView.theme({ ".cm-placeholder": { color: "#5f6b7d" } }), // CodeMirror's grey is below AA contrast
        CM.syntaxHighlighting(CM.defaultHighlightStyle, { fallback: true }),
        // Mod-Enter before the defaults (which would insert a line break); Tab indents, and
        // Escape then Tab moves on to the next field, as CodeMirror documents for keyboard users.
        CM.keymap.of([{ key: "Mod-Enter", run: submitForm }, ...CM.defaultKeymap, ...CM.historyKeymap, CM.indentWithTab]),
        CM.EditorView.contentAttributes.of({ "aria-label": "Code", "aria-describedby": "code-editor-help" }),
        sync,
      ],
    }),
  });
  textarea.after(view.dom);
  textarea.hidden = true;
  view.dom.classList.add("code-editor-cm");
  // The label and the error summary's link point at the hidden textarea: the editor takes the focus.
  document.querySelector(`label[for="${textarea.id}"]`)?.addEventListener("click", () => view.focus());
  for (const link of document.querySelectorAll(`#error-summary a[href="#${textarea.id}"]`)) {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      view.dom.scrollIntoView({ block: "center" });
      view.focus();
    });
  }
  const help = document.createElement("small");
  help.id = "code-editor-help";
  help.textContent = "Tab indents; Esc then Tab leaves the editor; Ctrl+Enter (⌘+Enter) runs it.";
  view.dom.after(help);
  window.crucibleEditor = view; // for the browser tests
} else if (form && textarea) {
  // No editor (the script failed to load): Ctrl/Cmd+Enter still submits from the plain field.
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      submitForm();
    }
  });
}

// Errors: the summary at the top takes the focus, so the page scrolls to it and a screen reader reads it.
document.getElementById("error-summary")?.focus();

// A chosen file names the run unless a name is typed (the server does the same: runs/forms.py).
const fileInput = document.getElementById("id_file");
const nameInput = document.getElementById("id_name");
if (fileInput && nameInput) {
  const fallback = nameInput.placeholder;
  fileInput.addEventListener("change", () => {
    const file = fileInput.files && fileInput.files[0];
    nameInput.placeholder = file ? file.name : fallback;
  });
}
