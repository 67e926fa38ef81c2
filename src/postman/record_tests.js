pm.test('status is 200', function () {
    pm.response.to.have.status(200);
});
const body = pm.response.json();
pm.test('the answer is the pushed record', function () {
    pm.expect(body.id).to.eql(pm.variables.get('record_id'));
    pm.expect(body.collection).to.eql(pm.variables.get('collection'));
    pm.expect(body.data).to.be.an('object');
    pm.expect(body.data.request).to.eql(pm.variables.get('idempotency_key'));
});
