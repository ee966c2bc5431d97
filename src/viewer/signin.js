// The viewer's sign-in form: hands the pasted token to POST /session (which sets the HttpOnly
// cookie that EventSource then sends by itself), then reloads the page that asked for it.
'use strict';

const form = document.getElementById('signin');
const field = document.getElementById('token');
const status = document.getElementById('signin-status');

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const token = field.value.trim();
  if (!token) return;
  status.textContent = 'Signing in…';
  let answer;
  try {
    answer = await fetch('/session', {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}` },
      credentials: 'same-origin',
    });
  } catch {
    status.textContent = 'The server cannot be reached. Try again in a moment.';
    return;
  }
  if (answer.status === 204) {
    field.value = '';
    window.location.reload();
  } else if (answer.status === 401) {
    status.textContent = 'That token is not valid, or it has expired.';
  } else {
    status.textContent = `The server answered ${answer.status}. Try again in a moment.`;
  }
});
