// The JavaScript client of seeds/table-tracker-quickstart.txt ("3. Retrieving
// Active Orders"), as published, run under Node 20's built-in WebSocket:
//
//     node --experimental-websocket tests/quickstart/quickstart.js HOST:PORT TOKEN
//
// (or FLOORBELL_ADDR / FLOORBELL_TOKEN in the environment). It is driven by
// tests/gateway_quickstart.rs.
//
// Changes to the published code, each marked below with the original line:
//   * the two placeholders, [IP_ADDRESS]:8000 and [YOUR TOKEN], are filled in
//     from the command line;
//   * only the fixes it needs to run at all (a missing parenthesis, `msg` for
//     `msg.data`, `foreach`, an object used as an array, the undefined
//     `order` and `data`);
//   * TEST ADDITION: after each message it prints its `orders` array as one
//     JSON line, for the test to read.

// TEST ADDITION: the placeholders' values.
var ADDRESS = process.argv[2] || process.env.FLOORBELL_ADDR;
var TOKEN = process.argv[3] || process.env.FLOORBELL_TOKEN;
if (!ADDRESS || !TOKEN) {
  console.error("usage: node --experimental-websocket quickstart.js HOST:PORT TOKEN");
  process.exit(2);
}

// Replace [IP_ADDRESS] with gateway IP address found during discovery.
// ORIGINAL: var ws = new WebSocket("ws://[IP_ADDRESS]:8000/api/v2/websocket");
var ws = new WebSocket("ws://" + ADDRESS + "/api/v2/websocket");

// Orders
// FIX (used as an array below: push, findIndex, splice)
// ORIGINAL: var orders = {};
var orders = [];

// Add hooks
ws.onopen = function() {
  // WebSocket connection opened, so we need to pass the token.
  // Data sent should be in JSON format.
  // FIX (syntax: one closing parenthesis missing)
  // ORIGINAL: ws.send(JSON.stringify({ "accesstoken": "[YOUR TOKEN]"});
  ws.send(JSON.stringify({ "accesstoken": TOKEN }));
}

ws.onmessage = function(msg) {
  // Messages received will always be in JSON and should be parsed.
  // FIX (the handler gets a MessageEvent; the text is its `data`)
  // ORIGINAL: var notification = JSON.parse(msg);
  var notification = JSON.parse(msg.data);

  // Check for notification type.
  if (notification.type === "ACTIVE_ORDERS") {
    // Handle initial population of orders
    // FIX (the array method is forEach)
    // ORIGINAL: notification.items.foreach(function(order) {
    notification.items.forEach(function(order) {
      orders.push(order);
    });
  }
  else if (notification.type === "ORDER_CREATED") {
    // FIX (`order` is not defined here; the new order is the notification)
    // ORIGINAL: orders.push(order);
    orders.push(notification);
  }
  else if (notification.type === "ORDER_MODIFIED") {
    // Find where order is in array
    var index = orders.findIndex(function(order) {
      // FIX (`data` is not defined; the changed order is the notification)
      // ORIGINAL: return order.uuid === data.uuid;
      return order.uuid === notification.uuid;
    });

    // Replace order
    orders.splice(index, 1, notification);
  }
  else if (notification.type === "ORDER_PAGED") {
    // Same as ORDER_MODIFIED, but allows some
    // distinguishing when an order is paged and not
    // simply some state change.
  }

  // TEST ADDITION: the client's view after this message, on one line.
  console.log(JSON.stringify(orders));
}

ws.onclose = function(event) {
  // Handle close events.
}

ws.onerror = function(event) {
  // Handle errors. Perhaps attempting to reconnect?
}
